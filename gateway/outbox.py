"""The transactional outbox: an agency's message, its sealed envelope and one
delivery row per recipient are written in one transaction, before the agency
gets an answer. The dispatcher does the sending; nothing here talks to peers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from gateway import onward, purge, sovereignty
from gateway.audit import log as audit
from gateway.envelope import UUID_RE, Recipient, seal
from gateway.errors import ApiError, printable
from gateway.inbox import NOT_HELD, corrects_readable, routed_to
from gateway.models import (
    AuditEntry,
    Delivery,
    DeliveryEvent,
    DeliveryState,
    InboundMessage,
    OutboundMessage,
    SealedEnvelope,
    is_row_id,
)
from gateway.node import Node
from gateway.policy import AGENCY_TYPES, Policy
from keys.trustlist import TrustError
from schemas import xb1json
from schemas.b64 import b64e
from schemas.common import shown_handling
from schemas.errors import WireFormatError
from schemas.registry import validate_body


@dataclass(frozen=True)
class Submission:
    message: OutboundMessage
    created: bool


def record_event(
    session: Session,
    delivery: Delivery,
    state: str,
    *,
    code: str | None = None,
    detail: str | None = None,
    worker: str | None = None,
    at: int | None = None,
    unstored_proven: bool = False,
) -> None:
    # A detail (and, defensively, a code) may quote a peer's answer: stored printable.
    code = None if code is None else printable(code)
    session.add(
        DeliveryEvent(
            delivery_id=delivery.id,
            at=int(time.time()) if at is None else at,
            state=state,
            code=code,
            detail=None if detail is None else printable(detail),
            worker=worker,
            unstored_proven=unstored_proven or None,
        )
    )
    audit.record(
        session,
        "delivery",
        at=at,
        delivery=delivery.id,
        message=delivery.message_id,
        recipient=delivery.recipient,
        state=state,
        code=code,
    )


# Codes of delivery events that only the dispatcher writes (a peer's unsigned ``error``
# is recorded only when it is a rejection code of PROTOCOL §3: gateway/dispatcher.py).
#: A signed refusal proving the recipient could not open the envelope, so stored none.
RESEAL_NEEDED = "reseal-needed"
#: A new envelope (a new id) sealed for the delivery, replacing the one sent before.
RESEALED = "resealed"
#: A claim that took over a delivery whose lease ran out with its attempt unrecorded (a
#: dispatcher stopped mid-send, or outlived its lease): that attempt may have arrived.
INTERRUPTED = "attempt-interrupted"


def may_have_arrived(
    session: Session, delivery_id: int, *, any_envelope: bool = False, proven: bool = False
) -> bool:
    """Whether an earlier attempt with the delivery's current envelope may have been
    stored by the recipient: one that ended ``retrying`` (a timeout, a lost or unsigned
    answer, or a signed refusal from before the recipient's replay check) or ended
    unrecorded (``attempt-interrupted``) after the envelope was last sealed, and before
    any signed proof that it was not stored. With ``any_envelope``, an attempt with any
    envelope of the delivery (one that a re-seal replaced too); ``proven``: the current
    envelope is proven not stored by an outcome not recorded yet."""
    codes = session.execute(
        select(DeliveryEvent.state, DeliveryEvent.code, DeliveryEvent.unstored_proven)
        .where(DeliveryEvent.delivery_id == delivery_id)
        .order_by(DeliveryEvent.id.desc())
    )
    for state, code, unstored in codes:  # newest first
        if code == RESEALED:
            if not any_envelope:
                return False
            proven = False  # the events before it are of the envelope it replaced
        elif proven:
            continue
        elif code == RESEAL_NEEDED or unstored:
            # A signed refusal: not a rejection this node decided itself (its policy no
            # longer letting the message go), which proves nothing about what was sent.
            if not any_envelope:
                return False
            proven = True
        elif state == DeliveryState.RETRYING or code == INTERRUPTED:
            return True
    return False


def withdrawn_detail(by: str, arrived: bool) -> str:
    """The detail of a delivery ended by a withdrawal: never sent again; whether an
    attempt may have reached the recipient all the same (see :func:`may_have_arrived`),
    in which case it must not say the recipient never had it."""
    if not arrived:
        return f"withdrawn by {by} before it was delivered"
    return (
        f"withdrawn by {by} before a receipt came; not sent again, but an earlier attempt "
        "may have arrived (the withdrawal goes to this recipient too)"
    )


def _what(decision: Any) -> str:
    return (
        f"exchange with {decision.value}"
        if decision.scope == "node"
        else (f"messages of type {decision.value}")
    )


def _string_keys(errors: Any) -> Any:
    """Field errors with list positions as strings ("subjects.0.names"-style JSON)."""
    if isinstance(errors, dict):
        return {str(key): _string_keys(value) for key, value in errors.items()}
    if isinstance(errors, list):
        return [_string_keys(value) for value in errors]
    return errors


def _recipients(node: Node, to: object, now: int) -> list[Recipient]:
    if not isinstance(to, list) or not to or not all(isinstance(n, str) for n in to):
        raise ApiError(
            "bad-recipients",
            '\'to\' must be a non-empty list of node ids, e.g. ["KG", "UZ"]',
            status=422,
        )
    if len(set(to)) != len(to):
        raise ApiError("bad-recipients", "'to' names a node twice", status=422)
    if node.id in to:
        raise ApiError("bad-recipients", f"a node does not send to itself ({node.id})", status=422)
    trust_list = node.require_sending_allowed(now)
    recipients = []
    for peer in to:
        if trust_list.node(peer) is None:
            raise ApiError(
                "unknown-recipient",
                # Shortened, and escaped by repr(): the value is as the caller sent it.
                f"{peer[:40]!r} is not a member of the federation's trust "
                f"list (version {trust_list.version})",
                status=422,
            )
        try:
            key = trust_list.keys.encryption_key(peer, now)
        except TrustError as e:
            raise ApiError(e.code, str(e), status=422) from e
        recipients.append(Recipient(peer, key.kid, key.pub))
    return recipients


def submit(
    session: Session,
    node: Node,
    *,
    agency: str,
    typ: object,
    body: object,
    to: object,
    idempotency_key: str | None = None,
    now: int | None = None,
    audience: object = None,
    token: int | None = None,
    user: str | None = None,
    types: frozenset[str] | None = None,
    reads: frozenset[str] | None = None,
) -> Submission:
    """Validate, apply the node's policy (agreements, minimisation for ``audience``),
    seal and queue a message. The caller commits the session; a policy denial is
    recorded in the audit log and committed before it is raised. The audit entry names
    the agency and, when given, the token and the person that submitted it. ``types``:
    the types of its agency's messages the caller's role sees, ``reads``: those it
    reads in the inbox (None: all)."""
    at = int(time.time()) if now is None else now
    if idempotency_key is not None:
        existing = session.scalars(
            select(OutboundMessage).where(
                OutboundMessage.agency == agency, OutboundMessage.idempotency_key == idempotency_key
            )
        ).first()
        if existing is not None:
            return Submission(existing, created=False)
    if not isinstance(typ, str):
        raise ApiError("bad-type", "'typ' must be a message type such as \"alert/1\"", status=422)
    try:
        loaded = validate_body(typ, body)
    except WireFormatError as e:
        raise ApiError(
            e.code, str(e), status=422, details=_string_keys(getattr(e, "errors", None))
        ) from e
    if audience is not None and audience not in AGENCY_TYPES:
        raise ApiError(
            "bad-audience",
            f"audience must be one of {', '.join(AGENCY_TYPES)} (the kind of agency the "
            "message is for)",
            status=422,
        )
    original = None
    if typ == CORRECTION:
        original, to = _correction_of(session, agency, loaded, to, types)
        if original.audience is not None:
            audience = original.audience  # minimised as the original was
    recipients = _recipients(node, to, at)
    policy = node.policy()
    loaded, minimised = _minimise(session, policy, agency, typ, loaded, audience, at)
    _check_agreements(session, policy, agency, typ, loaded, recipients, at)
    _check_onward(session, policy, agency, typ, loaded, recipients, at, reads)
    decisions = node.suspensions()
    for recipient in recipients:
        carried = sovereignty.carried_type(typ, loaded)
        decision = sovereignty.covering(decisions, recipient.node, typ, carried)
        if decision is not None:
            # Recorded, with the decisions before it, as every decision on the way out.
            _record_send(
                session,
                at,
                agency,
                typ,
                loaded,
                peer=recipient.node,
                allowed=False,
                rule=f"suspension:{decision.id}",
            )
            session.commit()
            raise ApiError(
                "suspended",
                f"this node has suspended {_what(decision)} (decision {decision.id}); ask the "
                "node's administrators",
                status=403,
            )
    trust_list = node.trust()
    try:
        payload = xb1json.dumps(loaded)
        envelope = seal(
            typ=typ,
            payload=payload,
            sender=node.id,
            signing_key=node.signing_pair(at),
            recipients=recipients,
            tl=trust_list.version,
            iat=at,
            ttl=node.settings.message_ttl,
        )
    except WireFormatError as e:
        raise ApiError(
            "not-representable", f"the body cannot be sent as xb1-json: {e}", status=422
        ) from e
    header = envelope.header
    message = OutboundMessage(
        id=header.id,
        typ=typ,
        agency=agency,
        created_at=at,
        body_json=payload.decode("utf-8"),
        idempotency_key=idempotency_key,
        audience=audience if isinstance(audience, str) else None,
        minimised=json.dumps([list(pair) for pair in minimised]) if minimised else None,
        corrected_at=loaded.get("corrected_at") if typ == CORRECTION else None,
        corrects_type=loaded.get("refers_to_type") if typ == CORRECTION else None,
    )
    session.add(message)
    session.add(
        SealedEnvelope(
            id=header.id,
            message_id=header.id,
            wire=envelope.to_wire(),
            ph=envelope.ph,
            ch=envelope.ch,
            iat=header.iat,
            exp=header.exp,
            tl=header.tl,
        )
    )
    try:
        session.flush()
    except IntegrityError as e:
        raise ApiError(
            "duplicate-submission",
            "this Idempotency-Key was used concurrently; "
            "retry the request to read the stored message",
            status=409,
        ) from e
    audit.record(
        session,
        "message-submitted",
        at=at,
        agency=agency,
        token=token,
        user=user,
        id=header.id,
        typ=typ,
        to=[r.node for r in recipients],
        # Why it was disclosed (metadata, not personal data): for the DPO's report.
        purpose=loaded.get("purpose"),
        basis=(loaded.get("legal_basis") or {}).get("instrument"),
        handling=shown_handling(loaded).get("code"),  # a correction: the stricter
        audience=audience,
        minimised=[f"{rule}:{path}" for rule, path in minimised],
        ph=b64e(envelope.ph),
        ch=b64e(envelope.ch),
    )
    for recipient in recipients:
        delivery = Delivery(
            message_id=header.id,
            envelope_id=header.id,
            recipient=recipient.node,
            state=DeliveryState.QUEUED,
            attempts=0,
            next_attempt_at=at,
            updated_at=at,
        )
        session.add(delivery)
        session.flush()
        record_event(session, delivery, DeliveryState.QUEUED, detail="stored and sealed", at=at)
    if original is not None:
        state = "withdrawn" if loaded["action"] == "withdraw" else "corrected"
        # Conditional on what was read: a withdrawal committed since (another request
        # at the same time) is not overwritten, nor, for a correction, a correction
        # whose corrected_at this one was not checked against (_require_later).
        unchanged = [OutboundMessage.state.is_distinct_from("withdrawn")]
        if state == "corrected":
            unchanged.append(OutboundMessage.state_by.is_not_distinct_from(original.state_by))
        changed = session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == original.id, *unchanged)
            .values(state=state, state_by=header.id)
            .execution_options(synchronize_session=False)
        )
        session.expire(original)
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            if original.state == "withdrawn":
                raise ApiError(
                    "already-withdrawn",
                    f"{original.id} was withdrawn by {original.state_by} meanwhile",
                    status=409,
                )
            raise ApiError(
                "correction-conflict",
                f"another correction of {original.id} ({original.state_by}) was sent "
                "meanwhile; read it, then send yours again with a later corrected_at",
                status=409,
            )
        if state == "withdrawn":
            _stop_deliveries(session, original, header.id, at)
            # An earlier correction still waiting to be delivered carries the data
            # withdrawn now: it is stopped too, and shows as withdrawn like the original.
            earlier_ones = _earlier_corrections(session, original, header.id)
            for earlier in earlier_ones:
                earlier.state, earlier.state_by = "withdrawn", header.id
                _stop_deliveries(session, earlier, header.id, at)
            # Erased here as at every recipient: the body, and the envelope bytes once
            # no delivery is still being sent (docs/policy.md).
            session.flush()
            for erased in (original, *earlier_ones):
                part = purge.erase_sent(session, erased.id, at)
                if part is not None:
                    audit.record(
                        session,
                        "purged",
                        at=at,
                        by=f"withdrawal {header.id}",
                        direction="sent",
                        id=erased.id,
                        typ=erased.typ,
                        part=part,
                    )
        audit.record(
            session,
            "correction-sent",
            at=at,
            agency=agency,
            token=token,
            user=user,
            id=header.id,
            refers_to=original.id,
            action=loaded["action"],
            to=[r.node for r in recipients],
        )
    return Submission(message, created=True)


CORRECTION = "correction/1"


WAITING = (DeliveryState.QUEUED, DeliveryState.RETRYING)


def _earlier_corrections(
    session: Session, original: OutboundMessage, withdrawal: str
) -> list[OutboundMessage]:
    """The corrections of ``original`` sent before ``withdrawal``, not withdrawn yet.
    Found by their ``correction-sent`` audit entries, which stay when retention has
    purged a correction's body while its envelope still waits for a delivery."""
    ids = set()
    # (A scan of this node's correction-sent entries, once per withdrawal: SQLite's
    # LIKE does not look into the entries' bytes.)
    for raw in session.scalars(
        select(AuditEntry.entry).where(AuditEntry.kind == "correction-sent")
    ):
        entry = json.loads(raw)
        if entry.get("refers_to") == original.id and entry.get("id") != withdrawal:
            ids.add(entry.get("id"))
    if not ids:
        return []
    return list(
        session.scalars(
            select(OutboundMessage).where(
                OutboundMessage.id.in_(sorted(ids)), OutboundMessage.state.is_(None)
            )
        )
    )


def _stop_deliveries(session: Session, original: OutboundMessage, by: str, at: int) -> None:
    """A withdrawn message must not reach anyone it has not reached yet. A delivery
    that a dispatcher is sending right now finishes its attempt: if that attempt does
    not deliver it, the dispatcher records it as withdrawn (gateway/dispatcher.py).
    Each change is conditional, so one claimed by a dispatcher meanwhile is left to it."""
    for delivery in original.deliveries:
        if delivery.state not in WAITING:
            continue
        detail = withdrawn_detail(by, may_have_arrived(session, delivery.id, any_envelope=True))
        stopped = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery.id, Delivery.state.in_(WAITING))
            .values(
                state=DeliveryState.EXPIRED,
                last_code="withdrawn",
                last_detail=detail,
                updated_at=at,
            )
            .execution_options(synchronize_session=False)
        )
        session.expire(delivery)
        if stopped.rowcount == 1:  # type: ignore[attr-defined]
            record_event(
                session, delivery, DeliveryState.EXPIRED, code="withdrawn", detail=detail, at=at
            )


def _require_later(session: Session, original: OutboundMessage, body: dict[str, Any]) -> None:
    """Recipients apply the corrections of a message in the order of their
    ``corrected_at`` (gateway/corrections.py), whatever order they arrive in: a
    correction must say a later time than the one applied before it. (A withdrawal
    has the last word in any order.)"""
    if body["action"] != "correct":
        return
    previous = session.get(OutboundMessage, original.state_by) if original.state_by else None
    before = previous.corrected_at if previous is not None else None
    if before is not None and body["corrected_at"] <= before:
        raise ApiError(
            "correction-order",
            f"corrected_at {body['corrected_at']} is not later than that of correction "
            f"{original.state_by} ({before}); recipients apply corrections in the order of "
            "corrected_at: give the time this correction was made",
            status=422,
        )


def _correction_of(
    session: Session,
    agency: str,
    body: dict[str, Any],
    to: object,
    types: frozenset[str] | None = None,
) -> tuple[OutboundMessage, object]:
    """The message a correction corrects, and its recipients: a correction or
    withdrawal goes to every recipient of the original and to no one else (``to``
    defaults to them). One the caller's role does not see (``types``, as
    :func:`visible`) is answered as one that does not exist, before anything about it
    (its type, a withdrawal) is said."""
    original = session.get(OutboundMessage, body["refers_to"])
    if original is None or original.agency != agency or not visible(original, types):
        raise ApiError(
            "unknown-original",
            f"{body['refers_to']} is not a message your agency sent from this node; only "
            "the sender of a message corrects or withdraws it",
            status=422,
        )
    if original.typ != body["refers_to_type"]:
        raise ApiError(
            "correction-type",
            f"{original.id} is a {original.typ} message, not {body['refers_to_type']}",
            status=422,
        )
    if original.state == "withdrawn":
        raise ApiError(
            "already-withdrawn", f"{original.id} was withdrawn by {original.state_by}", status=409
        )
    _require_later(session, original, body)
    everyone = [delivery.recipient for delivery in original.deliveries]
    if to is None:
        return original, everyone
    named = set(to) if isinstance(to, list) else set()
    missing = sorted(set(everyone) - named)
    if missing:
        raise ApiError(
            "correction-recipients",
            f"a correction goes to every recipient of the original; add {', '.join(missing)} "
            "to 'to' (or leave 'to' out)",
            status=422,
        )
    extra = sorted(named - set(everyone))
    if extra:
        # Nothing to correct there, and a withdrawal passes no agreement: its reason
        # must not reach a state that never received the original.
        raise ApiError(
            "correction-recipients",
            f"a correction goes only to the recipients of the original; remove "
            f"{', '.join(extra)} from 'to' (or leave 'to' out)",
            status=422,
        )
    return original, to


def _record_send(
    session: Session,
    at: int,
    agency: str,
    typ: str,
    body: dict[str, Any],
    **decision: Any,
) -> None:
    """One policy decision on an outgoing message, in the audit log."""
    audit.record(
        session,
        "policy",
        at=at,
        direction="send",
        typ=typ,
        purpose=body.get("purpose"),
        agency=agency,
        **decision,
    )


def denied_now(
    session: Session, policy: Policy, message: OutboundMessage, recipient: str, at: int
) -> tuple[str, str] | None:
    """Whether the policy in force at ``at`` still lets ``message`` go to ``recipient``:
    None if it does, else the rule and the reason why not. A message is judged when it
    is submitted, and again before each of its envelopes leaves (a retry, an operator's
    resend, a re-seal): an agreement ended or removed, or an originator's grant
    withdrawn or expired since, stops what is still queued. A withdrawal always goes
    (``decide_for``). A message whose body retention purged is not judged again:
    nothing is left to judge it by, and its envelope, if still kept, was allowed when
    it was sealed. A denial is
    recorded (a ``policy`` entry, ``at_send``) in the caller's transaction."""
    if message.body_json is None:
        return None
    body = json.loads(message.body_json)
    decision = policy.decide_for("send", recipient, message.typ, body, at)
    if not decision.allowed:
        _record_send(
            session, at, message.agency, message.typ, body, peer=recipient, allowed=False,
            at_send=message.id, **decision.recorded(),
        )  # fmt: skip
        return decision.rule, decision.reason
    # H2 data received after the message was submitted is not in it (a common name
    # matching a later message must not stop it); grants are judged as they are now.
    # Nothing is recorded here before a denial's audit entry takes the audit lock
    # (index=False): the identifiers were recorded when the message was submitted.
    for onward_decision in onward.decide(
        session, body, [recipient], at, received_by=message.created_at, index=False
    ):
        if not onward_decision.allowed:
            _record_send(
                session, at, message.agency, message.typ, body, peer=recipient,
                allowed=False, at_send=message.id, rule=onward_decision.rule,
                source=onward_decision.source, originator=onward_decision.originator,
            )  # fmt: skip
            # Said without naming the H2 message (the delivery's detail is read by the
            # submitting agency, which may not read that message); the entry names it.
            return onward_decision.rule, (
                "it carries H2 data of another member, which may not go to "
                f"{recipient} without that member's grant (grant/1)"
            )
    return None


def _denial(session: Session, message: str, details: dict[str, Any]) -> ApiError:
    """The ``policy-denied`` answer, after committing the decisions recorded so far:
    a denial stays on the record, and nothing else was added to the session."""
    session.commit()
    return ApiError("policy-denied", message, status=403, details=details)


def _minimise(
    session: Session,
    policy: Policy,
    agency: str,
    typ: str,
    body: dict[str, Any],
    audience: Any,
    at: int,
) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """The body without what ``audience`` may not receive; refused (and the refusal
    recorded) if what is left is no longer a valid message."""
    minimised, removed = policy.minimise(typ, body, audience)
    if not removed:
        return body, ()
    try:
        return validate_body(typ, minimised), tuple(removed)
    except WireFormatError as e:
        rules = sorted({rule for rule, _ in removed})
        _record_send(
            session, at, agency, typ, body, audience=audience, allowed=False, rule=",".join(rules)
        )
        raise _denial(
            session,
            f"for audience {audience}, rule(s) {', '.join(rules)} remove data this "
            f"{typ} message cannot do without; it is not sent to that audience",
            {"rules": rules, "errors": _string_keys(getattr(e, "errors", None))},
        ) from e


def _check_agreements(
    session: Session,
    policy: Policy,
    agency: str,
    typ: str,
    body: dict[str, Any],
    recipients: list[Recipient],
    at: int,
) -> None:
    """Every recipient must be covered by an agreement; every decision is recorded."""
    denied = []
    for recipient in recipients:
        decision = policy.decide_for("send", recipient.node, typ, body, at)
        _record_send(
            session,
            at,
            agency,
            typ,
            body,
            peer=recipient.node,
            allowed=decision.allowed,
            **decision.recorded(),
        )
        if not decision.allowed:
            denied.append(decision)
    if denied:
        raise _denial(
            session,
            "; ".join(f"{d.reason} (rule {d.rule})" for d in denied),
            {"rules": [d.rule for d in denied]},
        )


DENIALS_SAID = 10
"""H2 denials (one per H2 message and recipient) spelled out in a refusal's message at
most; its details name every message and recipient concerned."""


def _check_onward(
    session: Session,
    policy: Policy,
    agency: str,
    typ: str,
    body: dict[str, Any],
    recipients: list[Recipient],
    at: int,
    reads: frozenset[str] | None,
) -> None:
    """H2 data of another state goes to a third state only under its grant
    (gateway/onward.py); every decision is recorded, a denial before it is raised. The
    refusal names only the H2 messages the caller could read in its inbox (routed to
    its agency, of a type its role reads): the others are counted, not named, and the
    audit log and the data protection report have them all."""
    decisions = onward.decide(session, body, [r.node for r in recipients], at)
    for decision in decisions:
        _record_send(
            session,
            at,
            agency,
            typ,
            body,
            peer=decision.recipient,
            allowed=decision.allowed,
            rule=decision.rule,
            source=decision.source,
            originator=decision.originator,
        )
    denied = [d for d in decisions if not d.allowed]
    if denied:
        seen = _readable_sources(session, policy, agency, reads, {d.source for d in denied})
        said = [d for d in denied if d.source in seen]
        reasons = "; ".join(d.reason for d in said[:DENIALS_SAID])
        if len(said) > DENIALS_SAID:
            # A name common in received H2 data can touch thousands of messages: the
            # answer stays readable, the details name them all, the audit log has each.
            reasons += (
                f"; and {len(said) - DENIALS_SAID} more denials (details.sources names "
                "each H2 message concerned that your agency reads, details.recipients every "
                "recipient refused)"
            )
        hidden = {d.source for d in denied} - seen
        if hidden:
            refused = ", ".join(sorted({d.recipient for d in denied if d.source in hidden}))
            reasons += ("; " if reasons else "") + (
                f"it carries H2 data of {len(hidden)} message(s) of other members that your "
                f"agency does not read, which may not go to {refused} without their "
                "originators' grants; ask your central authority"
            )
        details: dict[str, Any] = {
            "rules": sorted({d.rule for d in denied}),
            "sources": sorted(seen),
            "recipients": sorted({d.recipient for d in denied}),
        }
        if hidden:
            details["unnamed_sources"] = len(hidden)
        raise _denial(session, reasons, details)


def _readable_sources(
    session: Session,
    policy: Policy,
    agency: str,
    reads: frozenset[str] | None,
    sources: set[str],
) -> set[str]:
    """Those of the received messages ``sources`` that ``agency`` reads in its inbox, as
    the inbox decides: routed to it when the node routes, not held in quarantine, of a
    type ``reads`` names (a correction: of the type it corrects too)."""
    query = select(InboundMessage).where(InboundMessage.envelope_id.in_(sorted(sources)), NOT_HELD)
    if policy.routing:
        central = policy.agency_type(agency) == "central-authority"
        query = query.where(routed_to(agency, central))
    return {
        message.envelope_id
        for message in session.scalars(query)
        if reads is None or (message.typ in reads and corrects_readable(message, reads))
    }


def get_message(
    session: Session,
    message_id: str,
    agency: str | None = None,
    types: frozenset[str] | None = None,
) -> OutboundMessage:
    """One outbound message; of ``agency`` and of one of ``types`` when given (None:
    any), else ``not-found``, as for a message that does not exist."""
    if not UUID_RE.match(message_id):
        raise ApiError(
            "not-found",
            f"no outbound message {message_id[:40]!r}: message ids are lowercase UUIDs",
            status=404,
        )
    query = (
        select(OutboundMessage)
        .where(OutboundMessage.id == message_id)
        .options(selectinload(OutboundMessage.deliveries).selectinload(Delivery.events))
    )
    message = session.scalars(query).first()
    if (
        message is None
        or (agency is not None and message.agency != agency)
        or not visible(message, types)
    ):
        raise ApiError("not-found", f"no outbound message {message_id} for this agency", status=404)
    return message


def visible(message: OutboundMessage, types: frozenset[str] | None) -> bool:
    """Whether a role that sees ``types`` of its agency's messages (None: all) sees this
    one: a correction counts as the type it corrects too (as in the inbox)."""
    if types is None:
        return True
    if message.typ != CORRECTION:
        return message.typ in types
    return CORRECTION in types and message.corrects_type in types


def _visible_types(types: frozenset[str]) -> ColumnElement[bool]:
    """:func:`visible` in a query."""
    others = and_(OutboundMessage.typ != CORRECTION, OutboundMessage.typ.in_(sorted(types)))
    if CORRECTION not in types:
        return others
    corrections = and_(
        OutboundMessage.typ == CORRECTION, OutboundMessage.corrects_type.in_(sorted(types))
    )
    return or_(others, corrections)


def list_messages(
    session: Session,
    *,
    agency: str | None = None,
    state: str | None = None,
    limit: int = 100,
    types: frozenset[str] | None = None,
    before: str | None = None,
) -> list[OutboundMessage]:
    """Outbound messages, newest first: of ``agency`` and of ``types`` when given,
    with a delivery in ``state``, and listed after message ``before`` (the last of
    the page before: a keyset cursor, so a page does not shift when messages are
    submitted meanwhile)."""
    query = select(OutboundMessage).options(selectinload(OutboundMessage.deliveries))
    if agency is not None:
        query = query.where(OutboundMessage.agency == agency)
    if types is not None:
        query = query.where(_visible_types(types))
    if state is not None:
        if state not in DeliveryState.ALL:
            raise ApiError(
                "bad-state", f"state must be one of {', '.join(DeliveryState.ALL)}", status=422
            )
        query = query.where(OutboundMessage.deliveries.any(Delivery.state == state))
    if before is not None:
        cursor = session.get(OutboundMessage, before) if UUID_RE.match(before) else None
        if (
            cursor is None
            or (agency is not None and cursor.agency != agency)
            or not visible(cursor, types)  # not even where it sits
        ):
            raise ApiError(
                "bad-cursor",
                f"before must be the id of a message listed to this caller, as given in "
                f"next_before; "
                f"{before[:40]!r} is not",
                status=422,
            )
        query = query.where(
            or_(
                OutboundMessage.created_at < cursor.created_at,
                and_(
                    OutboundMessage.created_at == cursor.created_at,
                    OutboundMessage.id < cursor.id,
                ),
            )
        )
    return list(
        session.scalars(
            query.order_by(OutboundMessage.created_at.desc(), OutboundMessage.id.desc()).limit(
                limit
            )
        )
    )


def retry(
    session: Session,
    delivery_id: int,
    *,
    policy: Policy,
    agency: str | None = None,
    who: str = "operator",
    now: int | None = None,
) -> Delivery:
    """Put a rejected or retrying delivery back in the queue, due now. The same
    envelope bytes are sent again, if ``policy`` still lets the message go there."""
    at = int(time.time()) if now is None else now
    delivery = session.get(Delivery, delivery_id) if is_row_id(delivery_id) else None
    if delivery is None or (agency is not None and delivery.message.agency != agency):
        raise ApiError("not-found", f"no delivery {delivery_id} for this agency", status=404)
    if delivery.message.state == "withdrawn":
        raise ApiError(
            "already-withdrawn",
            f"the message of delivery {delivery_id} was withdrawn by "
            f"{delivery.message.state_by}; it is not sent again",
            status=409,
        )
    if delivery.state not in (DeliveryState.REJECTED, DeliveryState.RETRYING):
        raise ApiError(
            "not-retryable",
            f"delivery {delivery_id} is {delivery.state}; only "
            "rejected or retrying deliveries can be retried",
            status=409,
        )
    if not delivery.envelope.wire or delivery.message.purged_at is not None:
        # Its retention ended: the bytes kept for a delivery still open do not make it
        # lawful to send again.
        still = (
            f"its attempts go on as scheduled (next at {delivery.next_attempt_at}) until it "
            "ends, as for every delivery still open at the purge"
            if delivery.state == DeliveryState.RETRYING
            else "it is not sent again"
        )
        raise ApiError(
            "purged",
            f"the message of delivery {delivery_id} was purged when its retention ended; "
            f"it cannot be retried by hand: {still}",
            status=409,
        )
    if delivery.envelope.exp < at:
        raise ApiError(
            "envelope-expired",
            f"the envelope of delivery {delivery_id} expired at "
            f"{delivery.envelope.exp}; submit the message again",
            status=409,
        )
    denied = denied_now(session, policy, delivery.message, delivery.recipient, at)
    if denied is not None:
        rule, reason = denied
        raise _denial(
            session,
            f"delivery {delivery_id} is not sent again: {reason} (rule {rule})",
            {"rules": [rule]},
        )
    # Conditional: a dispatcher may have claimed it, or a purge erased its envelope,
    # since it was read. (A purge that erases it after this statement, before this
    # transaction commits, is not seen on PostgreSQL: the dispatcher then ends the
    # delivery as purged, gateway/dispatcher.py. A purge that comes later sees the
    # delivery open and keeps the envelope, gateway/purge.py.)
    requeued = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.state.in_((DeliveryState.REJECTED, DeliveryState.RETRYING)),
            exists(
                select(SealedEnvelope.id).where(
                    SealedEnvelope.id == Delivery.envelope_id, SealedEnvelope.wire != b""
                )
            ),
        )
        .values(state=DeliveryState.QUEUED, next_attempt_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    session.expire(delivery)
    if requeued.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(
            "not-retryable",
            f"delivery {delivery_id} changed while the retry was asked for (a dispatcher "
            "is sending it, or its message was purged); look at its state again",
            status=409,
        )
    record_event(
        session,
        delivery,
        DeliveryState.QUEUED,
        code="manual-retry",
        detail=f"retry requested by {who}",
        at=at,
    )
    return delivery


def delivery_view(delivery: Delivery, *, with_events: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": delivery.id,
        "recipient": delivery.recipient,
        "envelope_id": delivery.envelope_id,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_code": delivery.last_code,
        "last_detail": delivery.last_detail,
        "delivered_at": delivery.delivered_at,
        "receipt_verified": delivery.receipt_verified,
        "receipt": b64e(delivery.receipt) if delivery.receipt else None,
    }
    if with_events:
        view["events"] = [
            {"at": e.at, "state": e.state, "code": e.code, "detail": e.detail}
            for e in delivery.events
        ]
    return view


def message_view(message: OutboundMessage, *, with_events: bool = True) -> dict[str, Any]:
    view = {
        "id": message.id,
        "typ": message.typ,
        "agency": message.agency,
        "created_at": message.created_at,
        "deliveries": [delivery_view(d, with_events=with_events) for d in message.deliveries],
    }
    if message.state is not None:  # corrected or withdrawn, by the correction state_by
        view["state"], view["state_by"] = message.state, message.state_by
    if message.purged_at is not None:
        view["purged_at"] = message.purged_at
    if message.minimised:  # what minimisation removed before sealing, when anything
        view["minimised"] = [
            {"rule": rule, "path": path} for rule, path in json.loads(message.minimised)
        ]
    return view
