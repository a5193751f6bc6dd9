"""Receiving envelopes from peers (PROTOCOL §3 steps 6 and 9, §4, §7) and reading the inbox.

``receive`` runs the opening pipeline, answers a retry of an accepted envelope
with the stored receipt, and stores the message, its receipt and its audit
entry in one transaction. Every refusal is recorded in
``inbound_rejections`` so an operator can see what was refused and why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select
from sqlalchemy.orm import Session

from gateway import corrections, sovereignty
from gateway.audit import log as audit
from gateway.db import DriverStatement, integrity_errors
from gateway.envelope import Envelope, Opened, Rejected, make_receipt, open_envelope
from gateway.errors import ApiError
from gateway.models import InboundMessage, InboundRejection, InboundRoute, is_row_id
from gateway.node import Node
from gateway.policy import Policy
from gateway.trust_sync import note_announcement
from keys.keypair import SigningKeyPair
from schemas.b64 import b64e
from schemas.common import HANDLING_CODES

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
_INBOUND = InboundMessage.__table__
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
_STORE = DriverStatement(insert(_INBOUND).returning(_INBOUND.c.id), keys=_STORED_COLUMNS)


class _Retry(Exception):
    def __init__(self, receipt: bytes) -> None:
        self.receipt = receipt


def _replay_check(connection: Connection) -> Callable[[Envelope], None]:
    def check(envelope: Envelope) -> None:
        """§3 step 6: same (from.node, id): same hashes is a retry, else a replay."""
        stored = _FIND_STORED.first(
            connection,
            {"sender": envelope.header.sender.node, "envelope_id": envelope.header.id},
        )
        if stored is None:
            return
        ph, ch, receipt = stored
        if bytes(ph) == envelope.ph and bytes(ch) == envelope.ch:
            raise _Retry(bytes(receipt))
        raise Rejected(
            "replay",
            f"envelope id {envelope.header.id} from "
            f"{envelope.header.sender.node} was already received with other content",
            envelope=envelope,
            authenticated=True,
        )

    return check


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


def receive(node: Node, raw: bytes, *, now: int | None = None, _again: bool = True) -> Answer:
    """Handle one ``POST /xb1/envelopes`` body and return the HTTP answer."""
    at = int(time.time()) if now is None else now
    signing_key = node.signing_pair(at)
    refused: Rejected | None = None
    denied_by: dict[str, Any] = {}  # the policy rule of a policy-denied refusal
    # The accept path is the node's hot path: it runs on one Core connection, with no
    # ORM unit of work. The replay check (step 6) reads on it; step 9 writes on it.
    with node.engine.connect() as connection:
        connection.begin()  # ended by _store's commit, or rolled back on leaving
        try:
            trust_list = node.trust()
            opened = open_envelope(
                raw,
                node=node.id,
                trust=trust_list.keys,
                enc_keys=node.keys.encryption_keys,
                now=at,
                limits=node.limits,
                replay_check=_replay_check(connection),
            )
            # §3 step 8, local policy: what this node has suspended on its own authority.
            decision = sovereignty.covering(
                node.suspensions(), opened.header.sender.node, opened.header.typ
            )
            if decision is not None:
                raise Rejected(
                    "policy-denied",
                    f"refused under local suspension {decision.id} ({decision.scope} "
                    f"{decision.value})",
                    envelope=opened.envelope,
                    authenticated=True,
                )
            # ... and the bilateral agreements of its policy file (gateway/policy.py).
            agreed = node.policy().decide_for(
                "receive", opened.header.sender.node, opened.header.typ, opened.body, at
            )
            if not agreed.allowed:
                denied_by = {"rule": agreed.rule, "purpose": opened.body.get("purpose")}
                raise Rejected(
                    "policy-denied",
                    f"{agreed.reason} (rule {agreed.rule})",
                    envelope=opened.envelope,
                    authenticated=True,
                )
        except _Retry as retry:
            return Answer(200, retry.receipt)
        except Rejected as error:
            refused = error
        else:
            receipt = _store(
                connection, node, raw, opened, signing_key, at, rule=agreed.rule, again=_again
            )
            if receipt is not None:
                if opened.header.tl > trust_list.version:
                    note_announcement(node, opened.header.sender.node, opened.header.tl, at)
                return Answer(200, receipt)
    if refused is None:
        # The same (sender, id) was stored by a concurrent request between our step 6
        # and now: run once more, and step 6 answers retry or replay.
        return receive(node, raw, now=at, _again=False)
    return _refuse(node, raw, refused, signing_key, at, **denied_by)


def _store(
    connection: Connection,
    node: Node,
    raw: bytes,
    opened: Opened,
    signing_key: SigningKeyPair,
    at: int,
    *,
    rule: str,
    again: bool,
) -> bytes | None:
    """§3 step 9: message, audit entry and receipt in one transaction. Returns the
    receipt, or None if a concurrent request stored the same (sender, id) first (and
    ``again`` allows one more run)."""
    envelope = opened.envelope
    header = envelope.header
    receipt = make_receipt(envelope, receiver=node.id, signing_key=signing_key, at=at)
    try:
        stored = _STORE.first(
            connection,
            {
                "sender": header.sender.node,
                "envelope_id": header.id,
                "typ": header.typ,
                "ph": envelope.ph,
                "ch": envelope.ch,
                "iat": header.iat,
                "exp": header.exp,
                "wire": bytes(raw),
                "body_json": opened.payload.decode("utf-8"),
                "receipt": receipt,
                "received_at": at,
                "sender_kid": header.sender.kid,
            },
        )
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
            rule=rule,
        )
        if header.typ == corrections.CORRECTION or node.policy().routing:
            _after_accept(connection, node, opened, stored[0], at)  # type: ignore[index]
        connection.commit()
    except integrity_errors(connection):
        # The unique (sender, envelope_id) of the replay table refused the row, before
        # any audit entry was appended (docs/decisions/0005).
        connection.rollback()
        if not again:
            raise
        return None
    return receipt


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
            correction_id=header.id,
            body=opened.body,
            at=at,
        )
        if original is not None and policy.routing:
            chosen = dict(destinations)
            for agency in corrections.routes_of(connection, original):
                chosen.setdefault(agency, "correction-of-original")
            destinations = sorted(chosen.items())
    if destinations:
        corrections.store_routes(connection, inbound_id, destinations)
        audit.record(
            connection,
            "routed",
            at=at,
            id=header.id,
            to=[f"{agency}:{rule}" for agency, rule in destinations],
        )


def _refuse(
    node: Node,
    raw: bytes,
    error: Rejected,
    signing_key: SigningKeyPair,
    at: int,
    **policy: Any,
) -> Answer:
    """Record a refusal (and its audit entry), answer with a signed rejected receipt
    once the sender is authenticated, else with the JSON error."""
    with node.sessions() as session:
        receipt = None
        if error.authenticated and error.envelope is not None:
            receipt = make_receipt(
                error.envelope,
                receiver=node.id,
                signing_key=signing_key,
                reason=error.code,
                at=at,
            )
        record_rejection(session, node, raw, error, receipt, at)
        claimed = error.envelope.header if error.envelope is not None else None
        audit.record(
            session,
            "envelope-refused",
            at=at,
            code=error.code,
            sender=claimed.sender.node if claimed else None,
            id=claimed.id if claimed else None,
            signed=error.authenticated,
            size=len(raw),
            **policy,
        )
        session.commit()
    if error.envelope is not None:
        # A sender we cannot authenticate may be using a newer list than ours.
        header = error.envelope.header
        note_announcement(node, header.sender.node, header.tl, at)
    status = STATUS.get(error.code, 400)
    if receipt is not None:
        return Answer(status, receipt)
    return Answer(status, json.dumps({"error": error.code, "message": error.message}).encode())


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
    dissemination; H3: the originator's own words)."""
    handling = body.get("handling") or {}
    code = str(handling.get("code", ""))
    notice = HANDLING_CODES.get(code, "unknown handling code: ask the originator")
    if handling.get("text"):
        notice = f"{notice}: {handling['text']}"
    return {"code": code, "notice": f"{code}: {notice}"}


_NOT_HELD = or_(InboundMessage.quarantined_at.is_(None), InboundMessage.released_at.is_not(None))


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
            messages=[m.envelope_id for m in messages],
        )
    session.commit()


def _routed_to(agency: str, unrouted_too: bool) -> Any:
    """Messages routed to ``agency``; with ``unrouted_too`` (a central authority) also
    those with no route at all, received before the node routed."""
    routed = InboundMessage.id.in_(
        select(InboundRoute.inbound_id).where(InboundRoute.agency == agency)
    )
    if not unrouted_too:
        return routed
    has_route = select(InboundRoute.id).where(InboundRoute.inbound_id == InboundMessage.id)
    return or_(routed, ~has_route.exists())


def _corrects_readable(message: InboundMessage, types: frozenset[str]) -> bool:
    """A correction carries a body of the type it corrects: a role reads it only if
    it may read that type."""
    if message.typ != corrections.CORRECTION or not message.body_json:
        return True
    return json.loads(message.body_json).get("refers_to_type") in types


def list_inbox(
    session: Session,
    *,
    after: int = 0,
    limit: int = 100,
    reader: Reader | None = None,
) -> list[InboundMessage]:
    """Inbound messages after id ``after``. For an agency (``reader``), only what it may
    see, quarantined ones left out, and the ones returned count as read."""
    if limit < 1 or limit > 1000:
        raise ApiError("bad-limit", "limit must be between 1 and 1000", status=422)
    query = select(InboundMessage).where(InboundMessage.id > after)
    types = reader.types if reader is not None else None
    if reader is not None:
        query = query.where(_NOT_HELD)
        if reader.routed_to is not None:
            query = query.where(_routed_to(reader.routed_to, reader.unrouted_too))
    if types is not None:
        query = query.where(InboundMessage.typ.in_(sorted(types)))
    messages = list(session.scalars(query.order_by(InboundMessage.id).limit(limit)))
    if types is not None:
        messages = [m for m in messages if _corrects_readable(m, types)]
    if reader is not None:
        _mark_fetched(session, messages, reader)
    return messages


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
                _routed_to(reader.routed_to, reader.unrouted_too),
            )
        )
        if visible is None:
            message = None
    types = reader.types if reader is not None else None
    if message is None or (
        types is not None and (message.typ not in types or not _corrects_readable(message, types))
    ):
        raise ApiError("not-found", f"no inbound message {inbound_id}", status=404)
    if reader is not None:
        if message.held:
            raise ApiError(
                "quarantined",
                f"inbound message {inbound_id} is held: the key it "
                "was signed with has been revoked; the node's operator decides "
                "whether to release it",
                status=409,
            )
        _mark_fetched(session, [message], reader)
    return message


def list_rejections(session: Session, *, limit: int = 100) -> list[InboundRejection]:
    return list(
        session.scalars(select(InboundRejection).order_by(InboundRejection.id.desc()).limit(limit))
    )
