"""Quarantine of inbound messages signed with a key that is later revoked (PROTOCOL §5:
a revoked key is refused for everything from ``revoked_at`` on, whatever ``iat``
says).

Messages this node accepted under a key before it learned of the key's revocation
may have been forged with the stolen key. Those no agency has read yet are held:
they disappear from the agency inbox and stay visible to the operator, who releases
each one, with a reason, after checking it with the sender by other means. Messages
an agency already read are left as they are (the revocation cannot unread them), and
the operator can list them. A message corrected by a held correction is held too,
read or not: what it shows now came from that correction.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from gateway import corrections
from gateway.audit import log as audit
from gateway.errors import ApiError
from gateway.models import InboundMessage, is_row_id
from gateway.sovereignty import require_reason_and_name
from keys.trustlist import TrustList


def hold_revoked(
    session: Session, trust_list: TrustList, now: int, *, previous: TrustList | None
) -> int:
    """Hold every unread inbound message signed with a key this list revokes, and every
    message whose body such a held correction replaced, read or not: the revocation
    cannot unread what an agency saw, but what the message shows from now on may have
    been forged with the stolen key. Runs in the transaction that installs the list
    (``previous``: the version installed before it, if any); returns how many were
    held.

    A message released before is held again, for the correction, only by the version
    that revokes the key: at later versions the operator's release stands (one made
    after the correction was held was made with it in view)."""
    held = 0
    version = trust_list.version
    revoked_before = _revoked_signing_keys(previous) if previous is not None else set()
    for entry in trust_list.nodes:
        for key in entry.keys:
            if key.use != "sig" or key.status != "revoked":
                continue
            sender, kid = entry.node, key.kid
            signed = f"signed with {sender}'s key {kid}, revoked in trust list version {version}"
            held += _hold(
                session,
                (InboundMessage.sender_kid == kid, InboundMessage.fetched_at.is_(None)),
                signed,
                now,
                sender=sender,
                kid=kid,
                version=version,
            )
            correction = aliased(InboundMessage)
            held_corrections = select(correction.envelope_id).where(
                correction.sender == sender,
                correction.sender_kid == kid,
                correction.typ == corrections.CORRECTION,
                correction.quarantined_at.is_not(None),
                correction.released_at.is_(None),
            )
            held += _hold(
                session,
                (
                    InboundMessage.state == "corrected",
                    InboundMessage.state_by.in_(held_corrections),
                ),
                f"corrected by a message {signed}, which is held",
                now,
                again=(entry.node, key.kid) not in revoked_before,
                sender=sender,
                kid=kid,
                version=version,
                corrected_by_held=True,
            )
    return held


def _revoked_signing_keys(trust_list: TrustList) -> set[tuple[str, str]]:
    return {
        (entry.node, key.kid)
        for entry in trust_list.nodes
        for key in entry.keys
        if key.use == "sig" and key.status == "revoked"
    }


def _hold(
    session: Session,
    which: tuple[ColumnElement[bool], ...],
    reason: str,
    now: int,
    *,
    sender: str,
    again: bool = False,
    **recorded: Any,
) -> int:
    """Hold ``sender``'s messages matching ``which`` that are not held now (``again``:
    also those released before, for a new reason), with one audit entry for them (if
    any); how many."""
    not_held: ColumnElement[bool] = InboundMessage.quarantined_at.is_(None)
    values: dict[str, Any] = {"quarantined_at": now, "quarantine_reason": reason}
    if again:
        not_held = or_(not_held, InboundMessage.released_at.is_not(None))
        # released_seq stays: a release numbers max + 1, and clearing the largest would
        # give its number out twice (an agency paging by it would miss the second).
        values.update(released_at=None, released_by=None, release_reason=None)
    result = session.execute(
        update(InboundMessage)
        .where(InboundMessage.sender == sender, not_held, *which)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        audit.record(session, "quarantine-hold", at=now, sender=sender, messages=count, **recorded)
    return count


def held(session: Session) -> list[InboundMessage]:
    return list(
        session.scalars(
            select(InboundMessage)
            .where(InboundMessage.quarantined_at.is_not(None), InboundMessage.released_at.is_(None))
            .order_by(InboundMessage.id)
        )
    )


def release(
    session: Session, inbound_id: int, *, reason: str, who: str, now: int | None = None
) -> InboundMessage:
    require_reason_and_name(reason, who)
    at = int(time.time()) if now is None else now
    audit.lock(session)  # before the row changes (gateway/audit/log.py)
    # Conditional, so that of two releases at the same time one releases and the
    # other finds it released (on SQLite too, where the lock above is the database's
    # single writer, taken only by this statement).
    released = session.execute(
        update(InboundMessage)
        .where(
            InboundMessage.id == (inbound_id if is_row_id(inbound_id) else -1),
            InboundMessage.quarantined_at.is_not(None),
            InboundMessage.released_at.is_(None),
        )
        .values(released_at=at, released_by=who.strip(), release_reason=reason.strip())
        .execution_options(synchronize_session=False)
    )
    if released.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError("not-held", f"inbound message {inbound_id} is not in quarantine", status=409)
    # As the update left it (also when this session had loaded it before).
    message = session.get(InboundMessage, inbound_id, populate_existing=True)
    assert message is not None
    audit.record(
        session,
        "quarantine-release",
        at=at,
        sender=message.sender,
        id=message.envelope_id,
        by=message.released_by,
        reason=message.release_reason,
    )
    # Numbered after the audit entry: on PostgreSQL its lock, held to the commit,
    # makes concurrent releases take turns, so no two get the same number.
    session.execute(
        update(InboundMessage)
        .where(InboundMessage.id == message.id)
        .values(
            released_seq=select(
                func.coalesce(func.max(InboundMessage.released_seq), 0) + 1
            ).scalar_subquery()
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(message, ["released_seq"])
    if message.typ == corrections.CORRECTION:  # it may wait for its original
        corrections.apply_released(session.connection(), message.id, at)
    return message
