"""Receiving envelopes from peers (PROTOCOL §3 steps 6 and 9, §4, §7) and reading the inbox.

``receive`` runs the opening pipeline, answers a retry of an accepted envelope
with the stored receipt, and stores the message, its receipt and its audit
entry in one transaction. Every refusal is recorded in
``inbound_rejections`` so an operator can see what was refused and why.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, bindparam, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from gateway import corrections, routing, sovereignty
from gateway.audit import log as audit
from gateway.db import DriverStatement
from gateway.envelope import (
    Envelope,
    Opened,
    Rejected,
    authenticate,
    decrypt_and_validate,
    make_receipt,
)
from gateway.errors import ApiError, NodeStateError
from gateway.group_commit import GroupCommit
from gateway.models import InboundMessage, InboundRejection, InboundRoute, is_row_id
from gateway.node import Node
from gateway.policy import Policy
from gateway.trust_sync import note_announcement
from keys.keypair import SigningKeyPair
from schemas.b64 import b64e
from schemas.common import HANDLING_CODES, shown_handling

# HTTP status for each rejection code (PROTOCOL §7 only requires "4xx").
STATUS = {
    "too-large": 413,
    "unknown-sender": 401,
    "key-not-valid": 401,
    "bad-signature": 401,
    "replay": 409,
    "policy-denied": 403,
    "schema-invalid": 422,
    "unsupported-type": 422,
}


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


# The receive path is the node's hot path: its statements are compiled once and run
# on the driver's cursor in a Core connection's transaction, without the ORM session
# and without SQLAlchemy's per-statement work (gateway.db.DriverStatement).
_INBOUND = cast(Table, InboundMessage.__table__)
_FIND_STORED = DriverStatement(
    select(_INBOUND.c.ph, _INBOUND.c.ch, _INBOUND.c.receipt).where(
        _INBOUND.c.sender == bindparam("sender"),
        _INBOUND.c.envelope_id == bindparam("envelope_id"),
    )
)
_STORED_COLUMNS = (
    "sender",
    "envelope_id",
    "typ",
    "ph",
    "ch",
    "iat",
    "exp",
    "wire",
    "body_json",
    "receipt",
    "received_at",
    "sender_kid",
)
# Step 6 and the insert of step 9 in one statement: a (sender, id) already stored
# (or being stored by a transaction that then commits) inserts nothing and returns no
# row, and only then is the stored copy read. The same text on SQLite and PostgreSQL.
_STORE = {
    dialect: DriverStatement(
        module.insert(_INBOUND)
        .on_conflict_do_nothing(index_elements=["sender", "envelope_id"])
        .returning(_INBOUND.c.id),
        keys=_STORED_COLUMNS,
    )
    for dialect, module in (("sqlite", sqlite), ("postgresql", postgresql))
}


def _stored(connection: Connection, envelope: Envelope) -> tuple[Any, ...] | None:
    """What is stored under ``envelope``'s (sender, id): its hashes and receipt."""
    return _FIND_STORED.first(
        connection, {"sender": envelope.header.sender.node, "envelope_id": envelope.header.id}
    )


def _step6(envelope: Envelope, stored: tuple[Any, ...] | None) -> bytes | None:
    """§3 step 6 on what is stored under the envelope's (sender, id): the stored
    receipt for a retry (same hashes), None for a new envelope; raises ``replay``."""
    if stored is None:
        return None
    ph, ch, receipt = stored
    if bytes(ph) == envelope.ph and bytes(ch) == envelope.ch:
        return bytes(receipt)
    raise Rejected(
        "replay",
        f"envelope id {envelope.header.id} from "
        f"{envelope.header.sender.node} was already received with other content",
        envelope=envelope,
        authenticated=True,
    )


def record_rejection(
    session: Session,
    node: Node,
    raw: bytes,
    error: Rejected,
    receipt: bytes | None,
    now: int,
    *,
    size: int | None = None,
) -> None:
    """Keep a refused envelope (its bytes when small enough) with its code."""
    envelope = error.envelope
    keep = raw if len(raw) <= node.settings.max_rejection_bytes else None
    session.add(
        InboundRejection(
            received_at=now,
            code=error.code,
            detail=error.message[:2000],
            sender=envelope.header.sender.node if envelope else None,
            envelope_id=envelope.header.id if envelope else None,
            authenticated=error.authenticated,
            size=len(raw) if size is None else size,
            wire=keep,
            receipt=receipt,
        )
    )


def receive(node: Node, raw: bytes, *, now: int | None = None) -> Answer:
    """Handle one ``POST /xb1/envelopes`` body and return the HTTP answer.

    Steps 1 to 5 run first. Steps 7 and 8 run next, on this request's thread, and
    step 6 runs last, with step 9 in the transaction that stores the message (which
    may hold other requests' messages too: gateway/group_commit.py). The answer and
    everything recorded are those of §3's order: when step 7 or 8 refuses, step 6 is
    checked first, so a retry still gets its stored receipt and a replay is refused
    as ``replay`` (docs/decisions/0012-group-commit.md).
    """
    at = int(time.time()) if now is None else now
    trust_list = node.trust()
    try:
        envelope = authenticate(raw, trust=trust_list.keys, now=at, limits=node.limits)
    except Rejected as error:
        return _refuse(node, raw, error, None, at)
    signing_key = _signing_key(node, envelope, at)
    denied_by: dict[str, Any] = {}  # the policy rule of a policy-denied refusal
    try:
        opened = decrypt_and_validate(envelope, node.id, node.keys.encryption_keys)
        rule = _local_policy(node, opened, at, denied_by)
    except Exception as error:
        # Step 6 comes first: whatever stopped steps 7 and 8 (a refusal, or an error
        # of this node's own), a retry gets its stored receipt, a replay ``replay``.
        with node.engine.connect() as connection:
            stored = _stored(connection, envelope)
        try:
            retry = _step6(envelope, stored)
        except Rejected as replay:
            return _refuse(node, raw, replay, signing_key, at)
        if retry is not None:
            return Answer(200, retry)
        if not isinstance(error, Rejected):
            raise
        return _refuse(node, raw, error, signing_key, at, **denied_by)
    receipt = make_receipt(envelope, receiver=node.id, signing_key=signing_key, at=at)
    accepting = _Accepting(node, raw, opened, receipt, at, rule)
    # A copy of the same envelope stored concurrently (another thread or process) is
    # met by the insert itself, which then inserts nothing (see _store_accepted).
    outcome = _accepting(node).run(accepting)
    if isinstance(outcome, Rejected):
        return _refuse(node, raw, outcome, signing_key, at)
    # Equal, not identical: a commit reported lost that went through answers with
    # the receipt it stored, which is this one.
    if outcome == receipt and envelope.header.tl > trust_list.version:
        note_announcement(node, envelope.header.sender.node, envelope.header.tl, at)
    return Answer(200, outcome)


def _local_policy(node: Node, opened: Opened, at: int, denied_by: dict[str, Any]) -> str:
    """§3 step 8, local policy: the rule that lets this message in, or ``policy-denied``
    (its rule and purpose put in ``denied_by`` for the refusal's audit entry)."""
    # What this node has suspended on its own authority ...
    typ = opened.header.typ
    decision = sovereignty.covering(
        node.suspensions(),
        opened.header.sender.node,
        typ,
        sovereignty.carried_type(typ, opened.body),
    )
    if decision is not None:
        raise Rejected(
            "policy-denied",
            f"refused under local suspension {decision.id} ({decision.scope} {decision.value})",
            envelope=opened.envelope,
            authenticated=True,
        )
    # ... and the bilateral agreements of its policy file (gateway/policy.py).
    agreed = node.policy().decide_for(
        "receive", opened.header.sender.node, opened.header.typ, opened.body, at
    )
    if not agreed.allowed:
        denied_by.update(agreed.recorded(), purpose=opened.body.get("purpose"))
        raise Rejected(
            "policy-denied",
            f"{agreed.reason} (rule {agreed.rule})",
            envelope=opened.envelope,
            authenticated=True,
        )
    return agreed.rule


@dataclass(frozen=True)
class _Accepting:
    """An envelope through steps 1 to 8, with its signed receipt, waiting for 6 and 9."""

    node: Node
    raw: bytes
    opened: Opened
    receipt: bytes
    at: int
    rule: str


def _store_accepted(connection: Connection, group: Sequence[_Accepting]) -> list[bytes | Rejected]:
    """§3 steps 6 and 9 for a group of envelopes, in one transaction: for each, the
    receipt to answer with (its own when stored now, the stored one for a retry) or
    the ``replay`` refusal. A (sender, id) twice in one group is a retry or a replay
    of the first, as the first is visible to this transaction once inserted.

    On PostgreSQL the audit lock must be taken before the first insert and held to the
    commit (:func:`accepting_group` takes it before it takes the group; a caller of
    this function takes it itself), so transactions that store messages take their
    ids and commit one after another: an inbox reader paging by id (``after``) never
    sees an id before a smaller one is committed, which it would then pass for good.
    (Ids taken before the lock could commit out of order between two worker
    processes.) And as every such transaction holds the lock before it inserts, an
    insert never waits, lock in hand, for another process's uncommitted copy of the
    same envelope. On SQLite the first insert takes the database's one write lock,
    with the same effect."""
    answers: list[bytes | Rejected] = []
    stored: list[tuple[_Accepting, int]] = []
    for item in group:
        row_id = _insert(connection, item)
        if row_id is not None:
            stored.append((item, row_id))
            answers.append(item.receipt)
            continue
        envelope = item.opened.envelope
        try:
            retry = _step6(envelope, _stored(connection, envelope))
        except Rejected as replay:
            answers.append(replay)
            continue
        if retry is None:  # a conflict, yet nothing stored (never seen): this node's error
            raise RuntimeError(f"envelope {envelope.header.id} conflicts with no stored row")
        answers.append(retry)
    # Originals before corrections: a correction in the same group as its original
    # then finds the original's routes stored, and goes where it went.
    for item, row_id in sorted(
        stored, key=lambda pair: pair[0].opened.header.typ == corrections.CORRECTION
    ):
        _record(connection, item, row_id)
    return answers


_GROUPS: weakref.WeakKeyDictionary[Node, GroupCommit[_Accepting, bytes | Rejected]] = (
    weakref.WeakKeyDictionary()
)
_GROUPS_LOCK = threading.Lock()


def _accepting(node: Node) -> GroupCommit[_Accepting, bytes | Rejected]:
    """The group commit of ``node``'s accepted envelopes (one per node per process)."""
    group = _GROUPS.get(node)
    if group is None:
        with _GROUPS_LOCK:
            group = _GROUPS.get(node)
            if group is None:
                group = _GROUPS[node] = accepting_group(node)
    return group


def accepting_group(node: Node) -> GroupCommit[_Accepting, bytes | Rejected]:
    """A new group commit of accepted envelopes. Its transactions take the audit lock
    (PostgreSQL) before the group is taken, as :func:`_store_accepted` needs: a leader
    waiting for another process's commit takes every envelope that came meanwhile."""
    return GroupCommit(node.engine, _store_accepted, first=audit.lock)


def _insert(connection: Connection, item: _Accepting) -> int | None:
    """§3 step 9 for one envelope, first part: the message row with its receipt; its
    id, or None when its (sender, id) is stored already (step 6 decides then)."""
    envelope = item.opened.envelope
    header = envelope.header
    row = _STORE[connection.dialect.name].first(
        connection,
        {
            "sender": header.sender.node,
            "envelope_id": header.id,
            "typ": header.typ,
            "ph": envelope.ph,
            "ch": envelope.ch,
            "iat": header.iat,
            "exp": header.exp,
            "wire": bytes(item.raw),
            "body_json": item.opened.payload.decode("utf-8"),
            "receipt": item.receipt,
            "received_at": item.at,
            "sender_kid": header.sender.kid,
        },
    )
    return None if row is None else int(row[0])


def _record(connection: Connection, item: _Accepting, row_id: int) -> None:
    """§3 step 9, second part: the audit entry (and, when the message is a correction
    or the node routes messages, what follows from it)."""
    node, opened, at = item.node, item.opened, item.at
    envelope = opened.envelope
    header = envelope.header
    audit.record(
        connection,
        "envelope-accepted",
        at=at,
        sender=header.sender.node,
        id=header.id,
        typ=header.typ,
        ph=b64e(envelope.ph),
        ch=b64e(envelope.ch),
        tl=header.tl,
        rule=item.rule,
    )
    if header.typ == corrections.CORRECTION or node.policy().routing:
        _after_accept(connection, node, opened, row_id, at)
    if header.typ != corrections.CORRECTION:
        corrections.apply_early(
            connection, sender=header.sender.node, original=row_id, original_id=header.id, at=at
        )


def _after_accept(
    connection: Connection, node: Node, opened: Opened, inbound_id: int, at: int
) -> None:
    """In the accepting transaction: apply a correction to its original, and record
    which local agencies the message goes to (a correction also to every agency that
    has the original)."""
    header = opened.header
    policy = node.policy()
    destinations = policy.destinations(header.typ, opened.body) if policy.routing else []
    if header.typ == corrections.CORRECTION:
        original = corrections.apply_received(
            connection,
            sender=header.sender.node,
            correction=inbound_id,
            correction_id=header.id,
            iat=header.iat,
            body=opened.body,
            at=at,
        )
        if original is not None and policy.routing:
            # The default rule (the central authority, so that nothing goes unseen) is
            # not needed where the original's agencies take the correction.
            chosen = {a: rule for a, rule in destinations if rule != routing.DEFAULT_RULE}
            for agency in corrections.routes_of(connection, original):
                chosen.setdefault(agency, "correction-of-original")
            destinations = sorted(chosen.items()) if chosen else destinations
    corrections.store_routes(
        connection,
        inbound_id,
        destinations,
        sender=header.sender.node,
        envelope_id=header.id,
        at=at,
    )


def refuse_unread(node: Node, error: Rejected, size: int, at: int) -> None:
    """Record a refusal decided before the body was read (an announced size over the
    limit, or chunks the server could not read): no bytes are kept, only the size
    announced (0 when none was)."""
    with node.sessions() as session:
        _record_refusal(session, node, b"", error, None, at, size=size)
        session.commit()


def _record_refusal(
    session: Session,
    node: Node,
    raw: bytes,
    error: Rejected,
    receipt: bytes | None,
    at: int,
    *,
    size: int | None = None,
    **policy: Any,
) -> None:
    """A refusal's row in ``inbound_rejections`` and its ``envelope-refused`` audit
    entry, in the caller's transaction: every refusal has both."""
    record_rejection(session, node, raw, error, receipt, at, size=size)
    claimed = error.envelope.header if error.envelope is not None else None
    audit.record(
        session,
        "envelope-refused",
        at=at,
        code=error.code,
        sender=claimed.sender.node if claimed else None,
        id=claimed.id if claimed else None,
        signed=error.authenticated,
        size=len(raw) if size is None else size,
        **policy,
    )


def _signing_key(node: Node, envelope: Envelope, at: int) -> SigningKeyPair:
    """The key a receipt for ``envelope`` (authenticated) is signed with. When the trust
    list lets this node use none of its own (revoked, its new one not listed yet), the
    ``signing-key-unusable`` NodeStateError (a 503: the peer keeps the envelope and
    tries again), after noting the newer trust list the envelope announces: it may be
    the version that lists this node's new key, which the node then follows."""
    try:
        return node.signing_pair(at)
    except NodeStateError:
        header = envelope.header
        note_announcement(node, header.sender.node, header.tl, at)
        raise


def _refuse(
    node: Node,
    raw: bytes,
    error: Rejected,
    signing_key: SigningKeyPair | None,
    at: int,
    **policy: Any,
) -> Answer:
    """Record a refusal (and its audit entry), answer with a signed rejected receipt
    once the sender is authenticated (signed with ``signing_key``, or with the key of
    :func:`_signing_key` when not given), else with the JSON error."""
    if signing_key is None and error.authenticated and error.envelope is not None:
        signing_key = _signing_key(node, error.envelope, at)
    with node.sessions() as session:
        receipt = None
        if signing_key is not None and error.authenticated and error.envelope is not None:
            receipt = make_receipt(
                error.envelope,
                receiver=node.id,
                signing_key=signing_key,
                reason=error.code,
                at=at,
            )
        _record_refusal(session, node, raw, error, receipt, at, **policy)
        session.commit()
    if error.envelope is not None and _announces(node, error):
        header = error.envelope.header
        note_announcement(node, header.sender.node, header.tl, at)
    status = STATUS.get(error.code, 400)
    if receipt is not None:
        return Answer(status, receipt)
    return Answer(status, json.dumps({"error": error.code, "message": error.message}).encode())


# Refusals before authentication that a newer trust list could explain: a member's key
# this node does not know yet, or one it knows as no longer valid.
_NEWER_LIST_MAY_EXPLAIN = frozenset({"unknown-sender", "key-not-valid"})


def _announces(node: Node, error: Rejected) -> bool:
    """Whether a refused envelope's ``tl`` counts as an announcement of that trust list
    version: always once the sender is authenticated; before that only when a newer
    list could explain the refusal and the claimed sender is a member of this node's
    list. Anyone can write any ``tl`` and any sender into an envelope that is not
    authenticated: without these limits, forged envelopes would fill the table of
    announcements with made-up members and versions."""
    if error.authenticated:
        return True
    assert error.envelope is not None
    sender = error.envelope.header.sender.node
    return error.code in _NEWER_LIST_MAY_EXPLAIN and node.trust().node(sender) is not None


def inbox_view(
    message: InboundMessage,
    *,
    with_body: bool = True,
    policy: Policy | None = None,
    audience: str | None = None,
) -> dict[str, Any]:
    """A received message as an agency sees it: with ``audience`` (the reader's agency
    type), minimised by ``policy`` for that type (an NGO sees no suspects)."""
    view: dict[str, Any] = {
        "id": message.id,
        "envelope_id": message.envelope_id,
        "sender": message.sender,
        "typ": message.typ,
        "iat": message.iat,
        "received_at": message.received_at,
    }
    if message.state is not None:  # corrected or withdrawn by the correction state_by
        view["state"], view["state_by"] = message.state, message.state_by
    if with_body:
        body = json.loads(message.body_json) if message.body_json else None
        if body is not None and policy is not None and audience is not None:
            body, removed = policy.minimise(message.typ, body, audience)
            if removed:
                view["minimised"] = sorted({rule for rule, _ in removed})
        view["body"] = body
        if body is not None:
            view["handling"] = handling_notice(body)
    if message.purged_at is not None:
        view["purged_at"] = message.purged_at
    return view


def handling_notice(body: dict[str, Any]) -> dict[str, str]:
    """The originator's handling code in words, shown with the data wherever it goes
    (H1: not for judicial proceedings without permission; H2: no onward
    dissemination; H3: the originator's own words). For a correction, the stricter of
    its own and its corrected body's: the body is what the reader sees."""
    handling = shown_handling(body)
    code = str(handling.get("code", ""))
    notice = HANDLING_CODES.get(code, "unknown handling code: ask the originator")
    if handling.get("text"):
        notice = f"{notice}: {handling['text']}"
    return {"code": code, "notice": f"{code}: {notice}"}


NOT_HELD = or_(InboundMessage.quarantined_at.is_(None), InboundMessage.released_at.is_not(None))


@dataclass(frozen=True)
class Reader:
    """An agency consulting its inbox: who reads, why, and what it may see."""

    agency: str
    justification: str | None
    token: int | None
    user: str | None
    types: frozenset[str] | None  # the types its role may read, None: all (gateway/access.py)
    routed_to: str | None  # with routing on: only messages routed to this agency
    unrouted_too: bool  # a central authority also sees messages received before routing


def _mark_fetched(session: Session, messages: list[InboundMessage], reader: Reader) -> None:
    """An agency has read these: from now on a revocation no longer holds them. Every
    consultation is in the audit log (who, with which token, when, which messages, why)."""
    now = int(time.time())
    if messages:
        audit.lock(session)  # before the rows change (gateway/audit/log.py)
        # A revocation that held some of them after the page was read (it installs
        # its list under the same lock): they are not read now, but after a release.
        held = set(
            session.scalars(
                select(InboundMessage.id).where(
                    InboundMessage.id.in_([m.id for m in messages]), ~NOT_HELD
                )
            )
        )
        messages[:] = [m for m in messages if m.id not in held]
    for message in messages:
        if message.fetched_at is None:
            message.fetched_at = now
    if messages:
        audit.record(
            session,
            "inbox-read",
            at=now,
            agency=reader.agency,
            token=reader.token,
            user=reader.user,
            justification=reader.justification,
            # [sender, envelope id]: an id is unique per sender only, so the sender says
            # whose message was read (earlier versions wrote the ids alone).
            messages=[[m.sender, m.envelope_id] for m in messages],
        )
    session.commit()


def routed_to(agency: str, unrouted_too: bool) -> Any:
    """Messages routed to ``agency``; with ``unrouted_too`` (a central authority) also
    those with no route at all, received before the node routed."""
    routed = InboundMessage.id.in_(
        select(InboundRoute.inbound_id).where(InboundRoute.agency == agency)
    )
    if not unrouted_too:
        return routed
    has_route = select(InboundRoute.id).where(InboundRoute.inbound_id == InboundMessage.id)
    return or_(routed, ~has_route.exists())


def corrects_readable(message: InboundMessage, types: frozenset[str]) -> bool:
    """A correction carries a body of the type it corrects: a role reads it only if
    it may read that type."""
    if message.typ != corrections.CORRECTION:
        return True
    if not message.body_json:  # erased (withdrawn, purged): what it corrects is not known
        return False
    return json.loads(message.body_json).get("refers_to_type") in types


#: Rows an inbox page reads at most beyond the page's own, looking for messages the
#: reader may see among ones it may not (corrections of types its role may not read).
MAX_SCAN = 5000


def list_inbox(
    session: Session,
    *,
    after: int = 0,
    limit: int = 100,
    reader: Reader | None = None,
) -> list[InboundMessage]:
    """Inbound messages after id ``after``. For an agency (``reader``), only what it may
    see, quarantined ones left out, and the ones returned count as read."""
    return inbox_page(session, after=after, limit=limit, reader=reader).messages


@dataclass(frozen=True)
class Page:
    messages: list[InboundMessage]
    next_after: int
    # The release cursor to pass as ``released_after`` next time.
    next_released_after: int


def inbox_page(
    session: Session,
    *,
    after: int = 0,
    limit: int = 100,
    reader: Reader | None = None,
    released_after: int | None = None,
) -> Page:
    """:func:`list_inbox`, with the cursors of the next page.

    ``next_after`` is the last id returned, or, when the page is not full, the last id
    read (rows the reader may not see are read once, not again on every later page).

    A message held in quarantine is left out, and a pager may pass its id meanwhile;
    once released it is not after that id. So a page starts with the messages
    released after ``released_after`` (the order of releases, ``released_seq``) whose
    id is not after ``after`` (later ones come in id order anyway); without
    ``released_after`` none, and ``next_released_after`` is the latest release, from
    which a pager follows them."""
    if limit < 1 or limit > 1000:
        raise ApiError("bad-limit", "limit must be between 1 and 1000", status=422)
    query = select(InboundMessage)
    types = reader.types if reader is not None else None
    if reader is not None:
        query = query.where(NOT_HELD)
        if reader.routed_to is not None:
            query = query.where(routed_to(reader.routed_to, reader.unrouted_too))
    if types is not None:
        query = query.where(InboundMessage.typ.in_(sorted(types)))
    messages: list[InboundMessage] = []
    # Releases up to here are this page's; one committed later (between the
    # statements below) is left to the next page's release part.
    horizon = session.scalar(select(func.max(InboundMessage.released_seq))) or 0
    next_released = horizon
    if released_after is not None:
        released = query.where(
            InboundMessage.released_seq > released_after,
            InboundMessage.released_seq <= horizon,
            InboundMessage.id <= after,
        ).order_by(InboundMessage.released_seq)
        read, done = _fill(
            session, released, InboundMessage.released_seq, released_after, limit, types, messages
        )
        if not done:  # the page filled, or its scan ended before the releases did
            next_released = read
    else:
        done = True
    scanned = after
    if done and len(messages) < limit:
        by_id = query.where(InboundMessage.id > after)
        if released_after is not None:
            # A message released after the horizon comes through the release part of
            # a later page, not here too.
            by_id = by_id.where(
                or_(InboundMessage.released_seq.is_(None), InboundMessage.released_seq <= horizon)
            )
        scanned, _ = _fill(
            session,
            by_id.order_by(InboundMessage.id),
            InboundMessage.id,
            after,
            limit,
            types,
            messages,
        )
    if reader is not None:
        _mark_fetched(session, messages, reader)
    return Page(messages, scanned, next_released)


def _fill(
    session: Session,
    query: Select[InboundMessage],
    key: InstrumentedAttribute[Any],
    start: int,
    limit: int,
    types: frozenset[str] | None,
    messages: list[InboundMessage],
) -> tuple[int, bool]:
    """Append to ``messages`` the rows of ``query`` (ordered by ``key``) after ``start``
    until ``limit``; returns how far it read (the key of the last message taken when
    the page filled, else of the last row read) and whether it read to the end of the
    rows.

    A correction is readable only with the type it corrects, which its body says: such
    rows are left out after reading, and more are read until the page is full, the
    rows end, or MAX_SCAN rows beyond the page have been read."""
    scanned = start
    budget = limit + MAX_SCAN
    while len(messages) < limit and budget > 0:
        batch = max(limit, min(budget, 500)) if types is not None else limit
        rows = list(session.scalars(query.where(key > scanned).limit(batch)))
        if not rows:
            return int(scanned), True
        budget -= len(rows)
        if types is not None:
            readable = [m for m in rows if corrects_readable(m, types)]
        else:
            readable = rows
        room = limit - len(messages)
        if len(readable) > room:
            # The page fills inside this batch: the next page starts after its last message.
            readable = readable[:room]
            scanned = getattr(readable[-1], key.key)
        else:
            scanned = getattr(rows[-1], key.key)
        messages.extend(readable)
    return int(scanned), False


def get_inbound(
    session: Session,
    inbound_id: int,
    *,
    reader: Reader | None = None,
) -> InboundMessage:
    """One inbound message; for an agency (``reader``) only one it may see, which then
    counts as read."""
    message = session.get(InboundMessage, inbound_id) if is_row_id(inbound_id) else None
    if reader is not None and reader.routed_to is not None and message is not None:
        visible = session.scalar(
            select(InboundMessage.id).where(
                InboundMessage.id == message.id,
                routed_to(reader.routed_to, reader.unrouted_too),
            )
        )
        if visible is None:
            message = None
    types = reader.types if reader is not None else None
    if message is None or (
        types is not None and (message.typ not in types or not corrects_readable(message, types))
    ):
        raise ApiError("not-found", f"no inbound message {inbound_id}", status=404)
    if reader is not None:
        read = [message] if not message.held else []
        # A revocation may hold it between the check above and the audit lock that
        # _mark_fetched takes: it then leaves it out, and it is not given either.
        _mark_fetched(session, read, reader)
        if not read:
            raise ApiError(
                "quarantined",
                f"inbound message {inbound_id} is held: the key it "
                "was signed with has been revoked; the node's operator decides "
                "whether to release it",
                status=409,
            )
    return message


def list_rejections(
    session: Session, *, limit: int = 100, before: int | None = None
) -> list[InboundRejection]:
    """Refusals, newest first; with ``before``, those older than refusal ``before``."""
    query = select(InboundRejection)
    if before is not None:
        query = query.where(InboundRejection.id < before)
    return list(session.scalars(query.order_by(InboundRejection.id.desc()).limit(limit)))
