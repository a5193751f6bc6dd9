"""Purging payloads whose retention has ended (DESIGN "Retention"; ``docs/policy.md``).

A message is kept for its body's ``retention_days`` from when this node sent or
received it, never longer than the policy's limit for its type. Then:

* a **received** message loses its body and its envelope bytes (which this node's
  keys could still decrypt); its metadata (sender, id, type, times), the hashes of
  its payload and ciphertext, and the signed receipt stay;
* a **sent** message loses its body at once, and the sealed envelope bytes once no
  delivery can need them again (every delivery delivered, rejected or expired);
  metadata, delivery history and receipts stay;
* a **refused** envelope, kept byte for byte in ``inbound_rejections`` so that an
  operator can see what came in, loses those bytes when the policy's ``[retention]
  refused`` days (30 by default) have passed since it arrived; the refusal's time,
  code, explanation, size, claimed sender and id, and signed receipt stay.

Each purged message is an audit entry (``purged``), and so is each run's purge of
refused envelopes (one entry with their number); the audit log never held
contents, so it stays whole and evidence bundles still verify (without the
envelope).

On SQLite the erased bytes are gone from the files too: the node runs SQLite with
``secure_delete`` (freed space is overwritten with zeros, ``gateway/db.py``), and
every purge run ends with a ``TRUNCATE`` checkpoint, which writes the zeroed pages
into the database file and empties the write-ahead log that still held the old
page images (bodies erased by a withdrawal go at the next run as well). On
PostgreSQL an erased value stays in the table's files as a dead row version until
vacuum reuses the space, which it does not overwrite at once: there the data at rest
is protected by the disk's encryption (docs/operations.md).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, exists, select, text, update
from sqlalchemy.orm import Session

from gateway import corrections, onward
from gateway.audit import log as audit
from gateway.db import SQLITE_BUSY_TIMEOUT_MS
from gateway.models import (
    Delivery,
    DeliveryState,
    InboundMessage,
    InboundRejection,
    OutboundMessage,
    SealedEnvelope,
)
from gateway.policy import CORRECTION, Policy

DAY = 86_400
CHECKPOINT_WAIT_MS = 1000
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    direction: str  # "received", "sent" or "refused"
    message: str
    typ: str
    retention_ends: int
    part: str  # "body and envelope", "body" (the envelope waits for deliveries), "envelope"
    # The row of a received message (envelope ids are unique per sender) or of a refusal.
    row_id: int | None = None
    sender: str | None = None  # of a received message: whose id ``message`` is


def _body(body_json: str | None) -> dict[str, Any] | None:
    try:
        body = json.loads(body_json) if body_json else None
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def retention_end(policy: Policy, typ: str, start: int, body_json: str | None) -> int:
    return start + policy.retention_days(typ, _body(body_json)) * DAY


def _has_open_delivery(message_id: str) -> ColumnElement[bool]:
    """Whether a delivery of ``message_id`` may still need its envelope, in a statement."""
    return exists(
        select(Delivery.id).where(
            Delivery.message_id == message_id, Delivery.state.not_in(DeliveryState.FINAL)
        )
    )


def _with_open_deliveries(session: Session) -> set[str]:
    """Outbound messages a delivery may still need the envelope of."""
    return set(
        session.scalars(
            select(Delivery.message_id).where(Delivery.state.not_in(DeliveryState.FINAL)).distinct()
        )
    )


def stored(session: Session, policy: Policy) -> list[tuple[str, str, str, int, str, int | None]]:
    """Every message whose body is still stored: (direction, id, type, retention end,
    who holds it — the sending peer or the submitting agency, row id if received)."""
    rows: list[tuple[str, str, str, int, str, int | None]] = []
    originals: dict[tuple[str, str], str] = {}  # (direction, correction id): original id
    for row_id, envelope_id, typ, received_at, body_json, sender in session.execute(
        select(
            InboundMessage.id,
            InboundMessage.envelope_id,
            InboundMessage.typ,
            InboundMessage.received_at,
            InboundMessage.body_json,
            InboundMessage.sender,
        ).where(InboundMessage.purged_at.is_(None), InboundMessage.body_json.is_not(None))
    ):
        ends = retention_end(policy, typ, received_at, body_json)
        rows.append(("received", envelope_id, typ, ends, sender, row_id))
        _note_original(originals, "received", envelope_id, typ, body_json)
    for message_id, typ, created_at, body_json, agency in session.execute(
        select(
            OutboundMessage.id,
            OutboundMessage.typ,
            OutboundMessage.created_at,
            OutboundMessage.body_json,
            OutboundMessage.agency,
        ).where(OutboundMessage.purged_at.is_(None))
    ):
        ends = retention_end(policy, typ, created_at, body_json)
        rows.append(("sent", message_id, typ, ends, agency, None))
        _note_original(originals, "sent", message_id, typ, body_json)
    return _no_longer_than_originals(session, rows, originals)


def _note_original(
    originals: dict[tuple[str, str], str],
    direction: str,
    message_id: str,
    typ: str,
    body_json: str | None,
) -> None:
    body = _body(body_json) if typ == CORRECTION else None
    # A withdrawal carries no data of its original, and keeps its reason.
    if body is None or body.get("action") != "correct":
        return
    refers_to = body.get("refers_to")
    if isinstance(refers_to, str):
        originals[(direction, message_id)] = refers_to


def _no_longer_than_originals(
    session: Session,
    rows: list[tuple[str, str, str, int, str, int | None]],
    originals: dict[tuple[str, str], str],
) -> list[tuple[str, str, str, int, str, int | None]]:
    """A correction carries its original's data (or the corrected form of it): it is
    kept no longer than the original, whatever its own retention, on the sending node
    as on the receiving one (an original purged before: no longer than that)."""
    received = {(m, holder): end for d, m, _, end, holder, _ in rows if d == "received"}
    sent = {m: end for d, m, _, end, _, _ in rows if d == "sent"}
    adjusted = []
    for direction, message_id, typ, end, holder, row_id in rows:
        original = originals.get((direction, message_id))
        limit: int | None = None
        if original is not None and direction == "received":
            limit = received.get((original, holder))
            if limit is None:  # purged before (its time), or not arrived yet (None)
                limit = session.scalar(
                    select(InboundMessage.purged_at).where(
                        InboundMessage.sender == holder, InboundMessage.envelope_id == original
                    )
                )
        elif original is not None:
            limit = sent.get(original)
            if limit is None:
                limit = session.scalar(
                    select(OutboundMessage.purged_at).where(OutboundMessage.id == original)
                )
        if limit is not None and limit < end:
            end = limit
        adjusted.append((direction, message_id, typ, end, holder, row_id))
    return adjusted


def due(session: Session, policy: Policy, now: int) -> list[Purged]:
    """What a purge at ``now`` removes, soonest first."""
    found = []
    open_deliveries = _with_open_deliveries(session)
    for direction, message_id, typ, ends, holder, row_id in stored(session, policy):
        if ends > now:
            continue
        if direction == "received":
            found.append(
                Purged(direction, message_id, typ, ends, "body and envelope", row_id, holder)
            )
        else:
            waiting = message_id in open_deliveries
            found.append(
                Purged(direction, message_id, typ, ends, "body" if waiting else "body and envelope")
            )
    # Sent messages purged earlier whose envelope waited for its deliveries (once each,
    # also when the message was sealed again and has several envelopes).
    for message_id, typ, purged_at in session.execute(
        select(OutboundMessage.id, OutboundMessage.typ, OutboundMessage.purged_at)
        .join(SealedEnvelope, SealedEnvelope.message_id == OutboundMessage.id)
        .where(OutboundMessage.purged_at.is_not(None), SealedEnvelope.wire != b"")
        .distinct()
    ):
        if message_id not in open_deliveries:
            found.append(Purged("sent", message_id, typ, purged_at or now, "envelope"))
    found += _refused_due(session, policy, now)
    return sorted(found, key=lambda p: (p.retention_ends, p.message))


def refused_due_by(policy: Policy, at: int) -> ColumnElement[bool]:
    """The refusals whose kept bytes are due for erasure by ``at``."""
    return and_(
        InboundRejection.wire.is_not(None),
        InboundRejection.received_at <= at - policy.refused_retention_days() * DAY,
    )


def _refused_due(session: Session, policy: Policy, now: int) -> list[Purged]:
    """Refused envelopes whose bytes are still kept past ``[retention] refused``."""
    kept = policy.refused_retention_days() * DAY
    return [
        Purged("refused", envelope_id or "-", "-", received_at + kept, "envelope", row_id)
        for row_id, envelope_id, received_at in session.execute(
            select(
                InboundRejection.id, InboundRejection.envelope_id, InboundRejection.received_at
            ).where(refused_due_by(policy, now))
        )
    ]


def run(session: Session, policy: Policy, *, now: int | None = None, by: str) -> list[Purged]:
    """Purge everything due, one transaction per message (and one for all refused
    envelopes); returns what was purged."""
    at = int(time.time()) if now is None else now
    done = []
    refused = []
    for item in due(session, policy, at):
        if item.direction == "refused":
            refused.append(item)
            continue
        # Each change is conditional: another purge run at the same time (the
        # dispatcher's and an operator's) may have been quicker; then this one
        # changes nothing and records nothing.
        audit.lock(session)
        changed = 0
        answered = _answer_of(session, item)
        if item.direction == "received":
            purged = _erase_received(session, item.row_id, at)
            if purged is not None:
                changed += 1
                corrections.erase_refused_copies(session, purged, item.message)
                # The corrections of it carry the same data (or its corrected form):
                # their retention ends with the original's at the latest.
                copies = corrections.purge_copies_of(
                    session.connection(),
                    purged,
                    item.message,
                    retention_ends=item.retention_ends,
                    at=at,
                    by=by,
                )
                done += [
                    Purged(
                        "received",
                        envelope_id,
                        CORRECTION,
                        item.retention_ends,
                        "body and envelope",
                        row,
                        item.sender,
                    )
                    for row, envelope_id in copies
                ]
            onward.forget(session, [item.row_id] if item.row_id is not None else [])
        else:
            erased = erase_sent(session, item.message, at, item.part)
            changed = int(erased is not None)
            if erased is not None and erased != item.part:  # the other part went meanwhile
                item = replace(item, part=erased)
        if not changed:
            session.rollback()
            continue
        audit.record(
            session,
            "purged",
            at=at,
            by=by,
            direction=item.direction,
            id=item.message,
            # A received message's sender (ids are unique per sender only).
            **({"sender": item.sender} if item.sender is not None else {}),
            typ=item.typ,
            retention_ends=item.retention_ends,
            part=item.part,
            **answered,
        )
        session.commit()
        done.append(item)
    if refused:
        done += _purge_refused(session, refused, at, by=by, days=policy.refused_retention_days())
    clear_write_ahead_log(session)
    return done


ANSWER = "case-response/1"


def _answer_of(session: Session, item: Purged) -> dict[str, str]:
    """For a case-response about to be purged: the request it answered and its outcome
    (ids and a code, no personal data), kept in its ``purged`` entry so that the data
    protection report still counts the request as answered (audit/oversight.py)."""
    if item.typ not in (ANSWER, CORRECTION) or item.part == "envelope":
        return {}
    if item.direction == "received":
        body_json = session.scalar(
            select(InboundMessage.body_json).where(InboundMessage.id == item.row_id)
        )
        body = _body(body_json) or {}
    else:
        row = session.execute(
            select(
                OutboundMessage.body_json, OutboundMessage.state, OutboundMessage.state_by
            ).where(OutboundMessage.id == item.message)
        ).first()
        body = sent_body_now(session, *row) if row is not None else {}
    if item.typ == CORRECTION:  # one that replaced a response: the outcome in force
        carried = body.get("body") if body.get("refers_to_type") == ANSWER else None
        body = carried if isinstance(carried, dict) else {}
    answer = {"in_reply_to": body.get("in_reply_to"), "outcome": body.get("outcome")}
    return {k: v for k, v in answer.items() if isinstance(v, str)}


def sent_body_now(
    session: Session, body_json: str | None, state: str | None, state_by: str | None
) -> dict[str, Any]:
    """A sent message's body as it stands now: the sending node keeps what it sent, and
    a correction that replaced it carries the body in force (a receiving node replaced
    its stored copy instead); {} when that is not stored (any more)."""
    body = _body(body_json) or {}
    if state == "corrected" and state_by is not None:
        correction = _body(
            session.scalar(select(OutboundMessage.body_json).where(OutboundMessage.id == state_by))
        )
        fixed = correction.get("body") if correction else None
        # Once the correction's own retention has purged it, the body in force is no
        # longer known here: what was sent first is not passed off for it.
        return fixed if isinstance(fixed, dict) else {}
    return body


def erase_sent(
    session: Session, message_id: str, at: int, part: str = "body and envelope"
) -> str | None:
    """Erase what ``part`` names of a sent message ("body", "envelope" or both): its
    body, and its envelope bytes only while no delivery is open (one put back in the
    queue since ``due`` looked, an operator's retry, still needs the bytes; they go at
    a later run, once it has ended). The part erased, or None if nothing was left."""
    body = envelope = 0
    if part != "envelope":
        body = _count(
            session,
            update(OutboundMessage)
            .where(OutboundMessage.id == message_id, OutboundMessage.purged_at.is_(None))
            .values(body_json=None, purged_at=at),
        )
    if part != "body":
        envelope = _count(
            session,
            update(SealedEnvelope)
            .where(
                SealedEnvelope.message_id == message_id,
                SealedEnvelope.wire != b"",
                ~_has_open_delivery(message_id),
            )
            .values(wire=b""),
        )
    parts = [name for name, changed in (("body", body), ("envelope", envelope)) if changed]
    return " and ".join(parts) or None


def _erase_received(session: Session, row_id: int | None, at: int) -> str | None:
    """Erase a received message's body and envelope; its sender, or None if it was
    purged meanwhile (by another run)."""
    sender: str | None = session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == row_id, InboundMessage.purged_at.is_(None))
        .values(body_json=None, wire=b"", purged_at=at)
        .returning(InboundMessage.sender)
        .execution_options(synchronize_session=False)
    ).scalar()
    return sender


def _count(session: Session, statement: Update) -> int:
    """Run an UPDATE; the number of rows it changed."""
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def _purge_refused(
    session: Session, items: list[Purged], at: int, *, by: str, days: int
) -> list[Purged]:
    """Erase the kept bytes of these refusals, with one audit entry for all of them
    (each refusal has its own entry already, ``envelope-refused``); returns those
    this run erased (another dispatcher may have been quicker with some)."""
    rows = [item.row_id for item in items]
    erased: set[int] = set()
    for start in range(0, len(rows), 500):
        erased.update(
            session.scalars(
                update(InboundRejection)
                .where(
                    InboundRejection.id.in_(rows[start : start + 500]),
                    InboundRejection.wire.is_not(None),
                )
                .values(wire=None)
                .returning(InboundRejection.id)
            )
        )
    items = [item for item in items if item.row_id in erased]
    if not items:
        session.commit()
        return []
    audit.record(
        session,
        "purged",
        at=at,
        by=by,
        direction="refused",
        part="envelope",
        count=len(items),
        retention_days=days,
        received_until=max(item.retention_ends for item in items) - days * DAY,
    )
    session.commit()
    return items


def clear_write_ahead_log(session: Session) -> bool:
    """On SQLite, fold the write-ahead log into the database file and truncate it, so
    page images from before a purge or withdrawal do not stay on disk; False if a
    reader kept the checkpoint from completing (the next run tries again). Nothing
    to do on PostgreSQL (True)."""
    if session.get_bind().dialect.name != "sqlite":
        return True
    session.commit()  # the checkpoint runs outside any transaction
    # It holds the write lock while it waits for readers to finish: wait a second at
    # most, so that accepting envelopes is never held up for longer.
    session.execute(text(f"PRAGMA busy_timeout={CHECKPOINT_WAIT_MS}"))
    try:
        busy, _, _ = session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)")).one()
    finally:
        session.execute(text(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"))
        session.commit()
    if busy:
        log.warning(
            "the write-ahead log could not be emptied after the purge (a reader was "
            "active); erased payloads stay in it until the next purge run"
        )
    return not busy
