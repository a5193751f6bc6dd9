"""Local sovereignty: a node may stop exchanging with a federation member, or stop a
message type, even while the trust list includes it. Each decision and its lifting
are kept with who decided and why.

While a suspension is in force the node refuses new submissions for it, holds
queued deliveries (``retrying`` with code ``suspended``: nothing is lost, they go
out when it is lifted, unless their envelope expires first) and refuses inbound
envelopes it covers with a signed ``policy-denied`` receipt (PROTOCOL §3 step 8).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gateway.audit import log as audit
from gateway.envelope import NODE_RE, TYP_RE
from gateway.errors import ApiError, NodeStateError
from gateway.models import Suspension, is_row_id
from schemas.common import FORBIDDEN_MULTI_LINE, FORBIDDEN_SINGLE_LINE
from schemas.registry import MESSAGE_TYPES

if TYPE_CHECKING:
    from gateway.node import Node

SCOPES = ("node", "type")
CORRECTION = "correction/1"


def _check_value(scope: str, value: str) -> None:
    if scope == "node" and not NODE_RE.match(value):
        raise ApiError("bad-suspension", f"{value!r} is not a node id such as KG", status=422)
    if scope == "type" and (not TYP_RE.match(value) or value not in MESSAGE_TYPES):
        # A misspelt type would suspend nothing, silently.
        raise ApiError(
            "bad-suspension",
            f"{value!r} is not a message type of the standard: {', '.join(sorted(MESSAGE_TYPES))}",
            status=422,
        )
    if scope not in SCOPES:
        raise ApiError("bad-suspension", f"scope must be one of {', '.join(SCOPES)}", status=422)


def _check_member(node: Node, value: str) -> None:
    """A node suspended must be another member: a misspelt one (KS for KZ) would hold
    nothing, silently. Without a trust list installed nothing is exchanged yet, and any
    node id may be suspended ahead."""
    if value == node.id:
        raise ApiError(
            "bad-suspension",
            f"{value} is this node; a node exchanges nothing with itself, so there is nothing "
            "to suspend",
            status=422,
        )
    try:
        trust_list = node.trust()
    except NodeStateError:
        return
    if trust_list.node(value) is None:
        members = ", ".join(sorted(n.node for n in trust_list.nodes if n.node != node.id))
        raise ApiError(
            "bad-suspension",
            f"{value} is not a member of trust list version {trust_list.version} (members: "
            f"{members}); check the node id",
            status=422,
        )


def require_reason_and_name(reason: str, who: str) -> None:
    """Every recorded decision says why and who (suspensions, quarantine releases)."""
    if (
        not reason
        or not reason.strip()
        or len(reason) > 2000
        or FORBIDDEN_MULTI_LINE.search(reason.replace("\r\n", "\n"))  # a form's line ends
    ):
        raise ApiError(
            "reason-required",
            "say why, in 1 to 2000 characters of text (line breaks allowed; no other control "
            "characters, bidirectional overrides or bytes that are not text)",
            status=422,
        )
    require_name(who)


def require_name(who: str, *, limit: int = 200) -> None:
    """A name recorded for who decides or asks: 1 to ``limit`` (200) characters, one
    line."""
    if not who or not who.strip() or len(who) > limit or FORBIDDEN_SINGLE_LINE.search(who):
        raise ApiError(
            "who-required",
            f"say who decides (a name or role, up to {limit} characters)",
            status=422,
        )


def listing(session: Session, *, include_lifted: bool = False) -> list[Suspension]:
    """Suspensions in force (or all of them), oldest first."""
    query = select(Suspension).order_by(Suspension.id)
    if not include_lifted:
        query = query.where(Suspension.lifted_at.is_(None))
    return list(session.scalars(query))


def active(session: Session) -> list[Suspension]:
    return listing(session)


def suspend(
    session: Session,
    *,
    scope: str,
    value: str,
    reason: str,
    who: str,
    now: int | None = None,
    node: Node | None = None,
) -> Suspension:
    """Record a suspension; with ``node``, a node suspended must be another member of
    its trust list (see :func:`_check_member`)."""
    _check_value(scope, value)
    if scope == "node" and node is not None:
        _check_member(node, value)
    require_reason_and_name(reason, who)
    # Of two suspensions of the same at the same time, one is recorded: the audit lock
    # (PostgreSQL) orders them, and on SQLite the insert takes the one write lock, so
    # the look for an earlier one after it sees every committed suspension.
    audit.lock(session)
    decision = Suspension(
        scope=scope,
        value=value,
        reason=reason.strip(),
        decided_by=who.strip(),
        created_at=int(time.time()) if now is None else now,
    )
    session.add(decision)
    session.flush()
    for existing in active(session):
        if (existing.scope, existing.value) == (scope, value) and existing.id != decision.id:
            raise ApiError(  # the caller's transaction, this insert in it, is not committed
                "already-suspended",
                f"{scope} {value} is already suspended (decision {existing.id})",
                status=409,
            )
    audit.record(
        session,
        "suspension",
        at=decision.created_at,
        decision=decision.id,
        scope=scope,
        value=value,
        by=decision.decided_by,
        reason=decision.reason,
    )
    return decision


def lift(
    session: Session, decision_id: int, *, reason: str, who: str, now: int | None = None
) -> Suspension:
    require_reason_and_name(reason, who)
    audit.lock(session)  # before the row changes (gateway/audit/log.py)
    # Conditional, so that of two lifts at the same time one lifts and the other finds
    # it lifted (the first decision, its time, who and why, stays).
    lifted = session.execute(
        update(Suspension)
        .where(
            Suspension.id == (decision_id if is_row_id(decision_id) else -1),
            Suspension.lifted_at.is_(None),
        )
        .values(
            lifted_at=int(time.time()) if now is None else now,
            lifted_by=who.strip(),
            lift_reason=reason.strip(),
        )
        .execution_options(synchronize_session=False)
    )
    found = is_row_id(decision_id)
    decision = session.get(Suspension, decision_id, populate_existing=True) if found else None
    if decision is None:
        raise ApiError("not-found", f"there is no suspension {decision_id}", status=404)
    if lifted.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError("already-lifted", f"suspension {decision_id} was lifted already", status=409)
    audit.record(
        session,
        "suspension-lifted",
        at=decision.lifted_at,
        decision=decision.id,
        by=decision.lifted_by,
        reason=decision.lift_reason,
    )
    return decision


def covering(
    decisions: list[Suspension], node: str, typ: str, carried: str | None = None
) -> Suspension | None:
    """The suspension in force for exchanges with ``node`` of type ``typ``, if any; of
    type ``carried`` too, the type of the body a correction carries (see
    :func:`carried_type`): a suspended type does not come in or go out as a
    correction's body either."""
    for decision in decisions:
        if (decision.scope, decision.value) in (("node", node), ("type", typ)):
            return decision
        if carried is not None and (decision.scope, decision.value) == ("type", carried):
            return decision
    return None


def carried_type(typ: str, body: object) -> str | None:
    """The type of the body a correction carries (action ``correct``), else None: a
    withdrawal carries no data and is never held by a type's suspension."""
    if typ != CORRECTION or not isinstance(body, dict) or body.get("action") != "correct":
        return None
    carried = body.get("refers_to_type")
    return carried if isinstance(carried, str) else None
