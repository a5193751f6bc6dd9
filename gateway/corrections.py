"""Applying a received ``correction/1`` to the message it corrects (DESIGN
"Originator control"; ``schemas/correction.py``).

Only the member that sent the original may correct or withdraw it: the original
is looked up by (sender, message id), so a correction from anyone else finds
nothing and changes nothing (it is kept and audited as ``correction-unmatched``).

* ``correct``: the stored body is replaced by the corrected body, which the
  schema of ``refers_to_type`` has already validated; state ``corrected``.
* ``withdraw``: the body and the envelope bytes are erased, metadata and receipt
  stay; state ``withdrawn``. Earlier corrections of the same message, which carry
  corrected bodies, are erased too.

The H2 identifiers of the original (``gateway/onward.py``) are replaced by those
of the corrected body, or dropped on withdrawal. A correction of a purged
message changes its state only: its data does not come back, and the correction's
own copy of it is purged on arrival.

Deliveries are retried independently, so the sender's messages may arrive in any
order; the sender's later word holds whichever arrives last. A correction that
comes before its original waits in ``early_corrections`` and is applied when the
original arrives (``apply_early``), and a withdrawal among the waiting ones erases
the others at once; one that comes before the correction already applied in the
sender's order (``corrected_at``, ``_order``) changes nothing, and one that comes
after the withdrawal is erased on arrival (both ``correction-outdated``).

A correction is routed to every local agency the original went to, besides the
agencies its own routing names, so every reader of the original learns of it.
Everything runs on the connection of the accepting transaction: on PostgreSQL
after that transaction took the audit lock (before its first insert), which it
holds until the commit, so an original and its correction accepted at the same
time by two processes are applied in turn and each sees the other.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, case, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from gateway.audit import log as audit
from gateway.db import DriverStatement
from gateway.errors import ApiError
from gateway.models import (
    EarlyCorrection,
    H2Identifier,
    InboundMessage,
    InboundRejection,
    InboundRoute,
    is_row_id,
)
from schemas import xb1json

CORRECTION = "correction/1"
_INBOUND = cast(Table, InboundMessage.__table__)
_ROUTES = cast(Table, InboundRoute.__table__)
_H2 = cast(Table, H2Identifier.__table__)
_EARLY = cast(Table, EarlyCorrection.__table__)
DISMISSED = "dismissed"  # the state of a correction an operator stopped from waiting
#: Not dismissed (dismiss_waiting): a waiting correction that still counts.
NOT_DISMISSED = or_(_INBOUND.c.state.is_(None), _INBOUND.c.state != DISMISSED)
# On the receive path of every message: compiled once, run on the driver's cursor.
_FIND_EARLY = DriverStatement(
    select(_EARLY.c.id).where(
        _EARLY.c.sender == bindparam("sender"), _EARLY.c.refers_to == bindparam("refers_to")
    )
)


def apply_received(
    connection: Connection,
    *,
    sender: str,
    correction: int,
    correction_id: str,
    iat: int,
    body: dict[str, Any],
    at: int,
) -> int | None:
    """Apply the correction (inbound row ``correction``, message id ``correction_id``,
    signed at ``iat``); returns the inbound id of the original when the correction
    concerns it, or None if this node holds no message of that id and type from that
    sender, or the original was withdrawn before."""
    if isinstance(body.get("corrected_at"), int):  # kept beside the body: it orders
        connection.execute(
            update(_INBOUND)
            .where(_INBOUND.c.id == correction)
            .values(corrected_at=body["corrected_at"])
        )
    original = connection.execute(
        select(
            _INBOUND.c.id, _INBOUND.c.typ, _INBOUND.c.state, _INBOUND.c.state_by,
            _INBOUND.c.purged_at,
        ).where(_INBOUND.c.sender == sender, _INBOUND.c.envelope_id == body["refers_to"])
    ).first()  # fmt: skip
    if original is None or original.typ != body["refers_to_type"]:
        if original is None:
            # The original may still be on its way (its delivery retried while this
            # one got through): applied when it arrives (apply_early).
            connection.execute(
                insert(_EARLY).values(
                    sender=sender,
                    refers_to=body["refers_to"],
                    refers_to_type=body["refers_to_type"],
                    action=body["action"],
                    correction_id=correction,
                )
            )
            _settle_early(connection, sender, body["refers_to"])
        audit.record(
            connection,
            "correction-unmatched",
            at=at,
            sender=sender,
            id=correction_id,
            refers_to=body["refers_to"],
            waiting=original is None,
        )
        return None
    correcting = body["action"] == "correct"
    if correcting and original.purged_at is not None:
        # Retention over: the correction brings nothing back, nor does its own copy of
        # the data, purged on arrival as its original was (metadata, hashes and
        # receipt stay), whether it is applied or outdated.
        _purge_copy(connection, correction, correction_id, retention_ends=original.purged_at, at=at)
    if original.state == "withdrawn" or (
        original.state == "corrected"
        and correcting
        and _signed_after(
            connection,
            sender,
            original.state_by,
            _order(iat, correction_id, body.get("corrected_at")),
        )
    ):
        # Sent before the withdrawal or correction already applied, and overtaken by
        # it on the way: it changes nothing, and after a withdrawal the data it
        # carries must not stay either; otherwise it shows as outdated by the later one.
        if original.state == "withdrawn":
            _erase(connection, correction, by=original.state_by)
        else:
            connection.execute(
                update(_INBOUND)
                .where(_INBOUND.c.id == correction)
                .values(state="outdated", state_by=original.state_by)
            )
        _record(
            connection, "correction-outdated", at, sender, correction_id, body, by=original.state_by
        )
        return None if original.state == "withdrawn" else int(original.id)
    if not correcting:
        values: dict[str, Any] = {"state": "withdrawn", "body_json": None, "wire": b""}
        erase_refused_copies(connection, sender, body["refers_to"])
    elif original.purged_at is not None:
        values = {"state": "corrected"}
    elif "body" not in body:
        # A correction applied late whose own copy was purged before the original came:
        # the original's data is known to be wrong and the right data is gone.
        values = {"state": "corrected", "body_json": None, "wire": b"", "h2_indexed_at": at}
    else:
        # Its H2 identifiers are recorded again from the corrected body on first need.
        values = {
            "state": "corrected",
            "body_json": xb1json.dumps(body["body"]).decode(),
            "h2_indexed_at": None,
            "h2_keys_version": 0,
        }
    # The row first: on PostgreSQL its lock waits for a transaction recording its H2
    # identifiers meanwhile, whose rows the delete below then sees.
    connection.execute(
        update(_INBOUND)
        .where(_INBOUND.c.id == original.id)
        .values(state_by=correction_id, **values)
    )
    # What this node knew of the original's H2 data no longer holds either way.
    connection.execute(delete(_H2).where(_H2.c.inbound_id == original.id))
    if not correcting:
        _erase_earlier_corrections(connection, sender, body["refers_to"], correction_id)
    elif original.state_by is not None:
        # The correction applied before is outdated by this one, as one arriving late is.
        connection.execute(
            update(_INBOUND)
            .where(
                _INBOUND.c.sender == sender,
                _INBOUND.c.envelope_id == original.state_by,
                _INBOUND.c.state.is_(None),
            )
            .values(state="outdated", state_by=correction_id)
        )
    _record(connection, "correction-applied", at, sender, correction_id, body)
    return int(original.id)


def _purge_copy(
    connection: Connection,
    row_id: int,
    correction_id: str,
    *,
    retention_ends: int,
    at: int,
    by: str = "a correction of a purged message",
) -> bool:
    """Purge a received correction's copy of its original's data; whether it was left."""
    sender = connection.execute(
        update(_INBOUND)
        .where(_INBOUND.c.id == row_id, _INBOUND.c.purged_at.is_(None))
        .values(body_json=None, wire=b"", purged_at=at, h2_indexed_at=at)
        .returning(_INBOUND.c.sender)
    ).scalar()
    if sender is None:  # purged before (applied late, after its own retention)
        return False
    erase_refused_copies(connection, sender, correction_id)
    connection.execute(delete(_H2).where(_H2.c.inbound_id == row_id))
    audit.record(
        connection,
        "purged",
        at=at,
        by=by,
        direction="received",
        id=correction_id,
        sender=sender,
        typ=CORRECTION,
        retention_ends=retention_ends,
        part="body and envelope",
    )
    return True


def _order(iat: int, correction_id: str, corrected_at: object) -> tuple[int, int, str]:
    """Where a correction stands in its sender's order: by ``corrected_at`` (in the
    body, so it survives the sender sealing the correction again under a new id and
    time; kept in its own column when retention purges the body), then by when it
    was sealed, then by id."""
    return (corrected_at if isinstance(corrected_at, int) else 0, iat, correction_id)


def _settle_early(connection: Connection, sender: str, original: str) -> None:
    """Among the corrections waiting for ``original``: once a withdrawal is among them,
    the data the others carry must not stay, even if the original never comes."""
    # The withdrawal first, by the index, without reading any body: corrections of one
    # id may pile up while their original never comes, and this runs for each.
    waiting = (
        select(_INBOUND.c.id)
        .join(_EARLY, _INBOUND.c.id == _EARLY.c.correction_id)
        .where(_EARLY.c.sender == sender, _EARLY.c.refers_to == original)
    )
    withdrawal = connection.execute(
        select(_INBOUND.c.envelope_id)
        .where(
            _INBOUND.c.id.in_(waiting.where(_EARLY.c.action == "withdraw")),
            # One held in quarantine counts once released (apply_released); one the
            # operator dismissed does not count (it is not applied either).
            or_(_INBOUND.c.quarantined_at.is_(None), _INBOUND.c.released_at.is_not(None)),
            NOT_DISMISSED,
        )
        .limit(1)
    ).scalar()
    if withdrawal is None:
        return
    # The original never arrived (or not yet): what its refused copies kept goes too.
    erase_refused_copies(connection, sender, original)
    carrying = connection.execute(
        waiting.where(_EARLY.c.action == "correct", _INBOUND.c.body_json.is_not(None))
    ).scalars()
    for row_id in list(carrying):
        _erase(connection, row_id, by=withdrawal)


def _record(
    connection: Connection,
    kind: str,
    at: int,
    sender: str,
    correction_id: str,
    body: dict[str, Any],
    **more: Any,
) -> None:
    """The audit entry of what a correction did."""
    audit.record(
        connection,
        kind,
        at=at,
        sender=sender,
        id=correction_id,
        refers_to=body["refers_to"],
        action=body["action"],
        **more,
    )


def apply_early(
    connection: Connection, *, sender: str, original: int, original_id: str, at: int
) -> None:
    """When a message arrives, apply the corrections of it that came first (in the
    sender's order, ``_order``) and route them also where it went. One indexed lookup
    for a message that has none. A correction held in quarantine meanwhile (its
    signing key was revoked since) stays waiting until it is released."""
    if _FIND_EARLY.first(connection, {"sender": sender, "refers_to": original_id}) is None:
        return
    early = [
        row
        for row in connection.execute(
            select(
                _EARLY.c.id, _EARLY.c.refers_to_type, _EARLY.c.action,
                _INBOUND.c.id.label("inbound"), _INBOUND.c.envelope_id, _INBOUND.c.iat,
                _INBOUND.c.body_json, _INBOUND.c.quarantined_at, _INBOUND.c.released_at,
                _INBOUND.c.corrected_at, _INBOUND.c.state,
            )
            .join(_INBOUND, _INBOUND.c.id == _EARLY.c.correction_id)
            .where(_EARLY.c.sender == sender, _EARLY.c.refers_to == original_id)
        )
        if row.quarantined_at is None or row.released_at is not None
    ]  # fmt: skip
    if not early:
        return
    connection.execute(delete(_EARLY).where(_EARLY.c.id.in_([row.id for row in early])))
    # One an operator dismissed (dismiss_waiting) is not applied now the original came.
    applicable = [row for row in early if row.state != DISMISSED]
    for row in sorted(applicable, key=lambda r: _order(r.iat, r.envelope_id, r.corrected_at)):
        body = json.loads(row.body_json) if row.body_json else {}
        if not body:  # purged or erased meanwhile: what the rows kept is enough
            body = {"refers_to": original_id, "refers_to_type": row.refers_to_type}
            body.update(action=row.action, corrected_at=row.corrected_at)
        if (
            apply_received(
                connection,
                sender=sender,
                correction=row.inbound,
                correction_id=row.envelope_id,
                iat=row.iat,
                body=body,
                at=at,
            )
            is None
        ):
            continue
        routed = set(routes_of(connection, row.inbound))
        added = [
            (a, "correction-of-original")
            for a in routes_of(connection, original)
            if a not in routed
        ]
        store_routes(
            connection, row.inbound, added, sender=sender, envelope_id=row.envelope_id, at=at
        )


def apply_released(connection: Connection, correction: int, at: int) -> None:
    """A correction released from quarantine that was waiting for its original: apply
    it now if the original has arrived meanwhile."""
    waiting = connection.execute(
        select(_EARLY.c.sender, _EARLY.c.refers_to).where(_EARLY.c.correction_id == correction)
    ).first()
    if waiting is None:
        return
    _settle_early(connection, waiting.sender, waiting.refers_to)  # a withdrawal counts now
    original = connection.scalar(
        select(_INBOUND.c.id).where(
            _INBOUND.c.sender == waiting.sender, _INBOUND.c.envelope_id == waiting.refers_to
        )
    )
    if original is not None:
        apply_early(
            connection,
            sender=waiting.sender,
            original=int(original),
            original_id=waiting.refers_to,
            at=at,
        )


def dismiss_waiting(
    session: Session, inbound_id: int, *, reason: str, who: str, now: int | None = None
) -> InboundMessage:
    """Stop a correction waiting for its original from waiting, with a recorded reason:
    the operator has dealt with it otherwise (its original reached this node under
    another envelope id after the sender sealed it again, decision 0007, and the
    operator acted on that message; or it will never come). The correction stays a
    received message (state ``dismissed``); it is no longer applied should its original
    come after all, nor reported as waiting, and a withdrawal of the same original that
    comes later still erases what it carries. Raises ``not-waiting`` if it does not
    wait."""
    from gateway.sovereignty import require_reason_and_name

    require_reason_and_name(reason, who)
    at = int(time.time()) if now is None else now
    audit.lock(session)  # before the row changes (gateway/audit/log.py)
    # Conditional, in one statement: an original applying it meanwhile, or another
    # dismissal, leaves nothing to dismiss (on SQLite too, where the lock above is a
    # no-op and this statement is the database's single writer).
    dismissed = session.execute(
        update(InboundMessage)
        .where(
            InboundMessage.id == (inbound_id if is_row_id(inbound_id) else -1),
            # Waiting as it came, or erased by a withdrawal waiting with it.
            NOT_DISMISSED,
            select(EarlyCorrection.id)
            .where(EarlyCorrection.correction_id == InboundMessage.id)
            .exists(),
        )
        .values(state=DISMISSED)
        .execution_options(synchronize_session=False)
    )
    if dismissed.rowcount != 1:  # type: ignore[attr-defined]
        raise ApiError(
            "not-waiting",
            f"inbound message {inbound_id} is not a correction waiting for its original "
            "('gateway audit dpo' lists those that are)",
            status=409,
        )
    message = session.get(InboundMessage, inbound_id, populate_existing=True)
    waiting = session.scalars(
        select(EarlyCorrection).where(EarlyCorrection.correction_id == inbound_id)
    ).first()
    assert message is not None and waiting is not None
    audit.record(
        session,
        "correction-dismissed",
        at=at,
        sender=message.sender,
        id=message.envelope_id,
        refers_to=waiting.refers_to,
        action=waiting.action,
        by=who.strip(),
        reason=reason.strip(),
    )
    return message


def _signed_after(
    connection: Connection, sender: str, applied: str | None, order: tuple[int, int, str]
) -> bool:
    """Whether the correction ``applied`` comes after ``order`` in the sender's order
    (``_order``): the sender's later word holds, whichever arrived last."""
    row = connection.execute(
        select(_INBOUND.c.iat, _INBOUND.c.corrected_at).where(
            _INBOUND.c.sender == sender, _INBOUND.c.envelope_id == applied
        )
    ).first()
    if row is None:
        return False
    if row.corrected_at is None:  # purged before its corrected_at was kept: by sealing
        return (int(row.iat), str(applied)) > order[1:]
    return _order(int(row.iat), str(applied), row.corrected_at) > order


def _erase(connection: Connection, row_id: int, *, by: str | None) -> None:
    """Erase a correction's body and envelope bytes (and those kept of its refused
    copies): the message it corrects was withdrawn. The row first, then its H2
    identifiers (see apply_received)."""
    erased = connection.execute(
        update(_INBOUND)
        .where(_INBOUND.c.id == row_id)
        .values(
            body_json=None,
            wire=b"",
            # One an operator dismissed stays dismissed (not waiting), its data erased.
            state=case((_INBOUND.c.state == DISMISSED, DISMISSED), else_="withdrawn"),
            state_by=by,
        )
        .returning(_INBOUND.c.sender, _INBOUND.c.envelope_id)
    ).first()
    if erased is not None:
        erase_refused_copies(connection, erased.sender, erased.envelope_id)
    connection.execute(delete(_H2).where(_H2.c.inbound_id == row_id))


def erase_refused_copies(connection: Connection | Session, sender: str, envelope_id: str) -> None:
    """Erase the bytes kept of earlier refusals of the envelope (``sender``, id): the
    message it carries was withdrawn, or its retention ended, so no copy of its data
    stays among the refused envelopes either. The refusals (code, time, size, receipt)
    stay. In the caller's transaction."""
    connection.execute(
        update(InboundRejection)
        .where(
            InboundRejection.sender == sender,
            InboundRejection.envelope_id == envelope_id,
            InboundRejection.wire.is_not(None),
        )
        .values(wire=None)
        .execution_options(synchronize_session=False)
    )


def purge_copies_of(
    connection: Connection, sender: str, original: str, *, retention_ends: int, at: int, by: str
) -> list[tuple[int, str]]:
    """The received message ``original`` of ``sender`` is purged (its retention ended):
    so are the corrections of it that still carry a body, its data or the corrected
    form of it, whatever their own retention (each with its ``purged`` audit entry).
    The (row id, envelope id) of those purged now."""
    return [
        (row_id, envelope_id)
        for row_id, envelope_id in _corrections_of(connection, sender, original)
        if _purge_copy(connection, row_id, envelope_id, retention_ends=retention_ends, at=at, by=by)
    ]


def _corrections_of(connection: Connection, sender: str, original: str) -> list[tuple[int, str]]:
    """(row id, envelope id) of the received corrections of ``original`` that still
    carry a body."""
    return [
        (row_id, envelope_id)
        for row_id, envelope_id, body_json in connection.execute(
            select(_INBOUND.c.id, _INBOUND.c.envelope_id, _INBOUND.c.body_json).where(
                _INBOUND.c.sender == sender,
                _INBOUND.c.typ == CORRECTION,
                # Stored bodies are canonical xb1-json: a cheap filter, checked below.
                _INBOUND.c.body_json.contains(f'"refers_to":"{original}"', autoescape=True),
            )
        )
        if json.loads(body_json).get("refers_to") == original
    ]


def _erase_earlier_corrections(
    connection: Connection, sender: str, original: str, withdrawal: str
) -> None:
    """A withdrawal also erases the corrected bodies that earlier corrections of the
    same message carried: none of that data may stay in use. The withdrawal itself,
    which carries no data, keeps its reason."""
    for row_id, envelope_id in _corrections_of(connection, sender, original):
        if envelope_id != withdrawal:
            _erase(connection, row_id, by=withdrawal)


def routes_of(connection: Connection, inbound_id: int) -> list[str]:
    return list(
        connection.scalars(select(_ROUTES.c.agency).where(_ROUTES.c.inbound_id == inbound_id))
    )


def store_routes(
    connection: Connection,
    inbound_id: int,
    routes: list[tuple[str, str]],
    *,
    sender: str,
    envelope_id: str,
    at: int,
) -> None:
    """Record that the received message goes to these (agency, rule) pairs too, with
    its ``routed`` audit entry."""
    if routes:
        connection.execute(
            insert(_ROUTES),
            [{"inbound_id": inbound_id, "agency": a, "rule": r} for a, r in routes],
        )
        audit.record(
            connection,
            "routed",
            at=at,
            id=envelope_id,
            sender=sender,  # ids are unique per sender only
            to=[f"{agency}:{rule}" for agency, rule in routes],
        )
