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

A correction is routed to every local agency the original went to, besides the
agencies its own routing names, so every reader of the original learns of it.
Everything runs on the connection of the accepting transaction.
"""

from __future__ import annotations

import json
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from gateway.audit import log as audit
from gateway.models import H2Identifier, InboundMessage, InboundRoute
from schemas import xb1json

CORRECTION = "correction/1"
_INBOUND = cast(Table, InboundMessage.__table__)
_ROUTES = cast(Table, InboundRoute.__table__)
_H2 = cast(Table, H2Identifier.__table__)


def apply_received(
    connection: Connection, *, sender: str, correction_id: str, body: dict[str, Any], at: int
) -> int | None:
    """Apply the correction; returns the inbound id of the original, or None if this
    node holds no message of that id from that sender."""
    original = connection.execute(
        select(_INBOUND.c.id, _INBOUND.c.typ, _INBOUND.c.state, _INBOUND.c.purged_at).where(
            _INBOUND.c.sender == sender, _INBOUND.c.envelope_id == body["refers_to"]
        )
    ).first()
    if original is None or original.typ != body["refers_to_type"] or original.state == "withdrawn":
        audit.record(
            connection,
            "correction-unmatched",
            at=at,
            sender=sender,
            id=correction_id,
            refers_to=body["refers_to"],
        )
        return None
    # What this node knew of the original's H2 data no longer holds either way.
    connection.execute(delete(_H2).where(_H2.c.inbound_id == original.id))
    if body["action"] == "withdraw":
        values: dict[str, Any] = {"state": "withdrawn", "body_json": None, "wire": b""}
        _erase_earlier_corrections(connection, sender, body["refers_to"], correction_id)
    elif original.purged_at is not None:
        values = {"state": "corrected"}  # retention over: the correction brings nothing back
        # Nor does the correction's own copy of the data: it is purged on arrival, as its
        # original was (metadata, hashes and receipt stay).
        connection.execute(
            update(_INBOUND)
            .where(_INBOUND.c.sender == sender, _INBOUND.c.envelope_id == correction_id)
            .values(body_json=None, wire=b"", purged_at=at, h2_indexed_at=at)
        )
        audit.record(
            connection,
            "purged",
            at=at,
            by="a correction of a purged message",
            direction="received",
            id=correction_id,
            typ=CORRECTION,
            retention_ends=original.purged_at,
            part="body and envelope",
        )
    else:
        # Its H2 identifiers are recorded again from the corrected body on first need.
        values = {
            "state": "corrected",
            "body_json": xb1json.dumps(body["body"]).decode(),
            "h2_indexed_at": None,
        }
    connection.execute(
        update(_INBOUND)
        .where(_INBOUND.c.id == original.id)
        .values(state_by=correction_id, **values)
    )
    audit.record(
        connection,
        "correction-applied",
        at=at,
        sender=sender,
        id=correction_id,
        refers_to=body["refers_to"],
        action=body["action"],
    )
    return int(original.id)


def _erase_earlier_corrections(
    connection: Connection, sender: str, original: str, withdrawal: str
) -> None:
    """A withdrawal also erases the corrected bodies that earlier corrections of the
    same message carried: none of that data may stay in use."""
    for row_id, body_json in connection.execute(
        select(_INBOUND.c.id, _INBOUND.c.body_json).where(
            _INBOUND.c.sender == sender,
            _INBOUND.c.typ == CORRECTION,
            _INBOUND.c.body_json.is_not(None),
        )
    ):
        if json.loads(body_json).get("refers_to") == original:
            connection.execute(delete(_H2).where(_H2.c.inbound_id == row_id))
            connection.execute(
                update(_INBOUND)
                .where(_INBOUND.c.id == row_id)
                .values(body_json=None, wire=b"", state="withdrawn", state_by=withdrawal)
            )


def routes_of(connection: Connection, inbound_id: int) -> list[str]:
    return list(
        connection.scalars(select(_ROUTES.c.agency).where(_ROUTES.c.inbound_id == inbound_id))
    )


def store_routes(connection: Connection, inbound_id: int, routes: list[tuple[str, str]]) -> None:
    if routes:
        connection.execute(
            insert(_ROUTES),
            [{"inbound_id": inbound_id, "agency": a, "rule": r} for a, r in routes],
        )
