"""Originator control of H2 data: no onward dissemination without a signed grant.

Handling code H2 says "no onward dissemination without the originator's
permission". The node enforces it by what the data *is*, not by what an agency
declares:

* for every accepted H2 message it records hashed identifiers of the people and
  things in it (gateway/identifiers.py: names, their parts and names in text,
  documents, phone numbers, accounts, e-mail addresses, messenger and social
  accounts, websites, vehicles, registration numbers) with the originating member. This is
  done on first need (before the next check of an outgoing message, and by the
  dispatcher at every round), so the receive path does no indexing;
* when an agency submits a message, the node computes the same identifiers of
  the outgoing body; for every recipient other than the originator of H2 data
  it names, the originator must have sent a ``grant/1`` covering that H2
  message, that recipient and the message's purpose, still valid and not
  withdrawn. Otherwise the submission is refused ``policy-denied`` with rule
  ``h2-no-grant`` naming the H2 message and its originator.

Sending the data back to its originator needs no grant. Every decision is in the
audit log. The identifiers go with the H2 message's payload (purge, withdrawal).

Matching is deliberately wide: a common name that also appears in H2 data is
refused until a grant covers it — the safe error for data about victims.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, or_, select, true, update
from sqlalchemy.orm import Session

from gateway.identifiers import identifier_keys
from gateway.models import H2Identifier, InboundMessage
from schemas.names import KEY_NUMBER

GRANT = "grant/1"
log = logging.getLogger(__name__)


def catch_up(session: Session, now: int) -> int:
    """Record the identifiers of H2 data in received messages not looked at yet, in
    the caller's transaction; returns how many messages were looked at. Run before
    every check, so the receive path does no indexing of its own. A backlog (all held
    bodies after an upgrade that changed the match keys) is for :func:`index_pending`,
    which ``gateway db upgrade`` and the dispatcher run."""
    looked, after = 0, 0
    while True:
        count, after = _catch_up_batch(session, now, after)
        looked += count
        if count < _BATCH:
            return looked


def index_pending(sessions: Callable[[], Session], now: int, *, batches: int | None = None) -> int:
    """:func:`catch_up`, a batch at a time (at most ``batches``), each batch in a
    transaction of its own, so that a backlog holds no transaction open for long;
    returns how many messages were looked at. On PostgreSQL a batch takes its rows'
    locks when it reads them and skips rows another transaction holds (they are
    recorded later), so it never waits for a row while holding others. Each batch's
    rows are read and their match keys computed before it writes (on SQLite a
    session takes the lock file at its first write, gateway/db.py)."""
    looked, after, done = 0, 0, 0
    while batches is None or done < batches:
        with sessions() as session:
            count, after = _catch_up_batch(session, now, after, skip_locked=True)
            session.commit()
        looked, done = looked + count, done + 1
        if count < _BATCH:
            break
    return looked


_BATCH = 500


def _catch_up_batch(
    session: Session, now: int, after: int, *, skip_locked: bool = False
) -> tuple[int, int]:
    """Up to ``_BATCH`` messages not looked at yet, of ids above ``after``, recorded in
    the caller's transaction: how many, and the last id read."""
    rows = _pending(session, after, skip_locked=skip_locked)
    if rows:
        _mark(session, _identifiers(rows), now)
        after = rows[-1][0]
    return len(rows), after


_Pending = Row[int, str, str | None, str | None]
_Found = tuple[int, str, str | None, str | None, set[bytes]]


def _pending(session: Session, after: int, *, skip_locked: bool = False) -> Sequence[_Pending]:
    """Up to ``_BATCH`` messages not looked at yet, of ids above ``after``."""
    query = (
        # Rows without a body (purged or withdrawn first) are marked too, so that no
        # row is looked at twice. "Not looked at" is version 0 (an equality, so that
        # the index on (h2_keys_version, id) serves it on both databases).
        select(
            InboundMessage.id,
            InboundMessage.sender,
            InboundMessage.body_json,
            InboundMessage.state_by,
        )
        .where(InboundMessage.h2_keys_version == 0, InboundMessage.id > after)
        .order_by(InboundMessage.h2_keys_version, InboundMessage.id)
        .limit(_BATCH)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)  # PostgreSQL; nothing on SQLite
    return session.execute(query).all()


def _identifiers(rows: Sequence[_Pending]) -> list[_Found]:
    """Each row with the match keys of its H2 data: computed before any write, so no
    write (nor SQLite's write lock) waits for them."""
    found = []
    for inbound_id, sender, body_json, state_by in rows:
        body = json.loads(body_json or "{}")
        try:
            keys = identifier_keys(body) if _h2(body) else set()
        except Exception:  # noqa: BLE001 - one body must not stop every check and round
            log.exception(
                "[h2-identifiers] the identifiers of received message %s could not be "
                "computed; it stays pending, and originator control does not see its data "
                "until they are",
                inbound_id,
            )
            continue
        found.append((inbound_id, sender, body_json, state_by, keys))
    return found


def _h2(body: object) -> bool:
    """Whether a received body is H2 data: its own handling code, or, for a correction,
    that of the body it carries (a correction marked H0 may carry an H2 message's data,
    readable while it waits for its original)."""
    if not isinstance(body, dict):
        return False
    carried = body.get("body")
    return _code(body) == "H2" or (isinstance(carried, dict) and _code(carried) == "H2")


def _code(body: dict[str, Any]) -> object:
    handling = body.get("handling")
    return handling.get("code") if isinstance(handling, dict) else None


def _mark(session: Session, found: list[_Found], now: int) -> None:
    """Record the identifiers of ``found`` and mark its rows as looked at: those whose
    state is still what it was when read."""
    alike: dict[tuple[str | None, bool], list[int]] = {}  # read with the same state
    keys_of: dict[int, tuple[str, set[bytes]]] = {}
    for inbound_id, sender, body_json, state_by, keys in found:
        alike.setdefault((state_by, body_json is not None), []).append(inbound_id)
        keys_of[inbound_id] = (sender, keys)
    marked: list[int] = []
    for (state_by, had_body), ids in alike.items():
        # Marked only if no correction changed the body since it was read (it waits for
        # a concurrent one on PostgreSQL); a changed row is indexed on the next round.
        marked += session.scalars(
            update(InboundMessage)
            .where(
                InboundMessage.id.in_(ids),
                InboundMessage.h2_keys_version == 0,
                InboundMessage.state_by.is_(None)
                if state_by is None
                else InboundMessage.state_by == state_by,
                # nor purged or withdrawn meanwhile
                InboundMessage.body_json.is_not(None) if had_body else true(),
            )
            .values(h2_indexed_at=now, h2_keys_version=KEY_NUMBER)
            .returning(InboundMessage.id)
            .execution_options(synchronize_session=False)
        ).all()
    if not marked:
        return
    # Whatever was recorded before (by a process of an older version) goes.
    session.execute(delete(H2Identifier).where(H2Identifier.inbound_id.in_(marked)))
    identifiers = [
        {"inbound_id": inbound_id, "originator": keys_of[inbound_id][0], "key": key}
        for inbound_id in sorted(marked)
        for key in sorted(keys_of[inbound_id][1])
    ]
    if identifiers:
        session.execute(insert(H2Identifier), identifiers)


def forget(connection: Connection | Session, inbound_ids: list[int]) -> None:
    """The payload of these messages is gone: so is what was known of their data."""
    if inbound_ids:
        connection.execute(delete(H2Identifier).where(H2Identifier.inbound_id.in_(inbound_ids)))


@dataclass(frozen=True)
class OnwardDecision:
    allowed: bool
    rule: str
    reason: str
    source: str  # the H2 message's id
    originator: str
    recipient: str


def _grants(session: Session, originator: str) -> list[tuple[str, dict[str, Any]]]:
    """The grants ``originator`` sent this node that may count: not withdrawn, not held."""
    rows = session.execute(
        select(InboundMessage.envelope_id, InboundMessage.body_json).where(
            InboundMessage.sender == originator,
            InboundMessage.typ == GRANT,
            InboundMessage.body_json.is_not(None),
            InboundMessage.state.is_distinct_from("withdrawn"),
            # a grant signed with a key since revoked is held, and counts for nothing
            or_(InboundMessage.quarantined_at.is_(None), InboundMessage.released_at.is_not(None)),
        )
    )
    return [(str(grant_id), json.loads(body_json or "{}")) for grant_id, body_json in rows]


def _covering(
    grants: list[tuple[str, dict[str, Any]]],
    source: str,
    recipient: str,
    purposes: list[Any],
    now: int,
) -> str | None:
    """The id of a grant covering ``source`` for ``recipient`` and every one of
    ``purposes`` now."""
    for grant_id, grant in grants:
        if (
            grant.get("refers_to") == source
            and recipient in grant.get("to_states", ())
            and all(purpose in grant.get("purposes", ()) for purpose in purposes)
            and grant.get("valid_until", 0) > now
            # Not before the time it was made: a grant dated ahead covers nothing yet.
            and grant.get("granted_at", now + 1) <= now
        ):
            return grant_id
    return None


def _purposes(body: dict[str, Any]) -> list[Any]:
    """The purposes an outgoing body serves: its own, and for a correction the purpose
    of the body it carries too (as the agreements are judged: policy.decide_for)."""
    carried = body.get("body")
    if isinstance(carried, dict) and "purpose" in carried:
        return [body.get("purpose"), carried.get("purpose")]
    return [body.get("purpose")]


#: Keys per query (a long text has thousands; SQLite limits the parameters of one).
_KEYS_PER_QUERY = 2_000


def decide(
    session: Session,
    body: dict[str, Any],
    recipients: list[str],
    now: int,
    *,
    received_by: int | None = None,
    index: bool = True,
) -> list[OnwardDecision]:
    """One decision per (H2 source, recipient) the outgoing ``body`` touches; with
    ``received_by``, only H2 messages received by then count (a message judged again
    before it leaves cannot carry data of one that came after it was submitted).
    ``index``: record the identifiers not recorded yet first (row writes, which a
    transaction that has not taken the audit lock must not make before it appends:
    gateway/audit/log.py lock); without, the identifiers recorded so far count (a
    message set back to pending keeps its earlier ones until recorded again)."""
    keys = sorted(identifier_keys(body, outgoing=True))
    if not keys:
        return []
    if index:
        catch_up(session, now)
    found: set[tuple[str, str]] = set()
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        query = (
            select(InboundMessage.envelope_id, H2Identifier.originator)
            .join(InboundMessage, InboundMessage.id == H2Identifier.inbound_id)
            .where(H2Identifier.key.in_(keys[start : start + _KEYS_PER_QUERY]))
            .distinct()
        )
        if received_by is not None:
            query = query.where(InboundMessage.received_at <= received_by)
        found.update(
            (str(source), str(originator)) for source, originator in session.execute(query)
        )
    sources = sorted(found)
    decisions = []
    grants: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for source, originator in sources:
        for recipient in recipients:
            if recipient == originator:
                continue
            if originator not in grants:
                grants[originator] = _grants(session, originator)
            grant = _covering(grants[originator], source, recipient, _purposes(body), now)
            if grant is not None:
                decisions.append(
                    OnwardDecision(
                        True,
                        f"grant:{grant}",
                        f"{originator}'s grant {grant} lets H2 data of {source} go to {recipient}",
                        source,
                        originator,
                        recipient,
                    )
                )
            else:
                decisions.append(
                    OnwardDecision(
                        False,
                        "h2-no-grant",
                        f"the message carries H2 data of {originator}'s message {source}, "
                        f"which may not go to {recipient} without {originator}'s grant "
                        f"(grant/1) for purpose {' and '.join(map(str, _purposes(body)))}",
                        source,
                        originator,
                        recipient,
                    )
                )
    return decisions
