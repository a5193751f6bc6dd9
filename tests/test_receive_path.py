"""The receive path's own shortcuts decide exactly as the general code they stand in for:
statements on the driver's cursor (both databases), the race between two copies of
one envelope, the path-free check of local references and the ASCII rule of Latin
names."""

from __future__ import annotations

import copy
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from sqlalchemy import func, insert, select

from gateway import inbox
from gateway.db import DriverStatement, integrity_errors
from gateway.inbox import receive
from gateway.models import InboundMessage
from schemas import common
from schemas.examples import EXAMPLES
from schemas.registry import validate_body
from tests.test_exchange import deliveries, inbox_count, submit

_INBOUND = InboundMessage.__table__
_INSERT = DriverStatement(insert(_INBOUND).returning(_INBOUND.c.id), keys=inbox._STORED_COLUMNS)
_COUNT = DriverStatement(select(func.count()).select_from(_INBOUND))


def _row(envelope_id: str) -> dict[str, object]:
    return {
        "sender": "ZZ",
        "envelope_id": envelope_id,
        "typ": "alert/1",
        "ph": b"p" * 32,
        "ch": b"c" * 32,
        "iat": 1,
        "exp": 2,
        "wire": b"{}",
        "body_json": "{}",
        "receipt": b"r",
        "received_at": 1,
        "sender_kid": "0" * 32,
    }


def test_driver_statements_run_in_the_connections_transaction(make_federation):
    node = make_federation(("KZ",), serve=False)["KZ"].node
    with node.engine.connect() as connection:
        connection.begin()
        (before,) = _COUNT.first(connection, {})
        _INSERT.first(connection, _row("rolled-back"))
        connection.rollback()
        connection.begin()
        (row_id,) = _INSERT.first(connection, _row("kept"))
        connection.commit()
    assert isinstance(row_id, int)
    with node.engine.connect() as connection:
        connection.begin()
        assert _COUNT.first(connection, {}) == (before + 1,)
    with node.sessions() as session:
        ids = session.scalars(
            select(InboundMessage.envelope_id).where(InboundMessage.sender == "ZZ")
        ).all()
    assert ids == ["kept"]


def test_a_duplicate_on_the_driver_raises_an_error_the_inbox_catches(make_federation):
    node = make_federation(("KZ",), serve=False)["KZ"].node
    with node.engine.connect() as connection:
        connection.begin()
        _INSERT.first(connection, _row("twice"))
        connection.commit()
        connection.begin()
        with pytest.raises(integrity_errors(connection)):
            _INSERT.first(connection, _row("twice"))
        connection.rollback()
        connection.begin()  # the connection is usable again
        assert _COUNT.first(connection, {})[0] >= 1


def test_a_copy_stored_between_replay_check_and_insert_gets_the_stored_receipt(
    make_federation, monkeypatch
):
    """The race of two copies of one envelope, made deterministic: the second copy's
    replay check (step 6) is skipped once, so its insert meets the unique constraint,
    and the run that follows answers with the first copy's receipt."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    first = receive(kg.node, wire)
    assert first.status == 200

    real_check = inbox._replay_check
    skipped = []

    def skip_once(connection):
        if skipped:
            return real_check(connection)
        skipped.append(True)
        return lambda envelope: None

    monkeypatch.setattr(inbox, "_replay_check", skip_once)
    second = receive(kg.node, wire)
    assert skipped == [True]
    assert (second.status, second.body) == (200, first.body)
    assert inbox_count(kg, "KZ", sent["id"]) == 1


# --------------------------------------------------------------------------- references


def _with_references(typ: str) -> list[dict]:
    """The loaded examples of ``typ`` that carry local ids."""
    return [
        validate_body(typ, body)
        for body in (make() for make in EXAMPLES[typ].values())
        if any(isinstance(o.get("id"), str) for o in common.json_objects(body))
    ]


_REFERRING = [typ for typ in sorted(EXAMPLES) if _with_references(typ)]


def _id_slots(body: dict) -> list[tuple[dict, str, int | None]]:
    """Every place an id or a reference is written: (object, member, index in a list)."""
    slots: list[tuple[dict, str, int | None]] = []
    for _, member, obj in common._walk_objects(body, (), None):
        if isinstance(obj.get("id"), str):
            slots.append((obj, "id", None))
        for holder, ref_member in common.REFERENCE_MEMBERS:
            if holder != member:
                continue
            refs = obj.get(ref_member)
            if isinstance(refs, list):
                slots.extend((obj, ref_member, i) for i in range(len(refs)))
            elif isinstance(refs, str):
                slots.append((obj, ref_member, None))
    return slots


@pytest.mark.parametrize("typ", _REFERRING)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_quick_reference_check_agrees_with_the_full_one(typ, data):
    examples = _with_references(typ)
    body = copy.deepcopy(data.draw(st.sampled_from(examples)))
    slots = _id_slots(body)
    pool = sorted({obj[m] if i is None else obj[m][i] for obj, m, i in slots} | {"nobody"})
    ids = [slot for slot in slots if slot[1] == "id"]
    refs = [slot for slot in slots if slot[1] != "id"]
    # Ids are changed less often than references: a duplicate id hides the rest.
    chosen = data.draw(st.lists(st.sampled_from(ids), max_size=1)) + data.draw(
        st.lists(st.sampled_from(refs), max_size=2)
    )
    for obj, member, index in chosen:
        value = data.draw(st.sampled_from(pool))
        if index is None:
            obj[member] = value
        else:
            obj[member][index] = value
    assert common._references_hold(body) == (common._reference_errors_by_path(body) == {})


def test_the_quick_reference_check_sees_what_the_full_one_reports():
    body = _with_references("alert/1")[0]
    assert common._references_hold(body)
    ids = [o["id"] for o in common.json_objects(body) if isinstance(o.get("id"), str)]
    assert len(ids) >= 2
    for obj in common.json_objects(body):
        if obj.get("id") == ids[1]:
            obj["id"] = ids[0]  # a duplicate id
    assert not common._references_hold(body)
    assert "already used" in str(common.local_reference_errors(body))
    assert common.local_reference_errors(body) == common._reference_errors_by_path(body)


# --------------------------------------------------------------------------- Latin names


def _letter_by_letter(text: str) -> bool:
    """LatinText's rule written out for one character at a time."""
    return any(common.LatinText._is_latin_letter(ch) for ch in text) and all(
        common.LatinText._is_allowed(ch) for ch in text
    )


@given(st.text(alphabet=string.printable, min_size=1, max_size=12))
def test_ascii_latin_names_follow_the_letter_by_letter_rule(text):
    field = common.LatinText(max_length=200)
    try:
        field.deserialize(text)
    except ValidationError as e:
        accepted = False
        assert e.messages
    else:
        accepted = True
    blank_or_forbidden = text.strip() == "" or common._FORBIDDEN_SINGLE_LINE.search(text)
    assert accepted == (not blank_or_forbidden and _letter_by_letter(text))


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("Asel Zhakypova", True),
        ("O'Brien-Smith", True),
        ("Öwezgeldi Ýazmyradow", True),
        ("Oʻrinboy", True),
        ("Agent 007", False),
        ("- .", False),
        ("Асель", False),
    ],
)
def test_latin_names(text, accepted):
    field = common.LatinText(max_length=200)
    try:
        field.deserialize(text)
    except ValidationError:
        assert not accepted
    else:
        assert accepted
