"""The receive path's own shortcuts decide exactly as the general code they stand in for:
statements on the driver's cursor (both databases), the race between two copies of
one envelope, the path-free check of local references and the ASCII rule of Latin
names."""

from __future__ import annotations

import copy
import os
import string
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from sqlalchemy import func, insert, select

from gateway import inbox, sovereignty
from gateway.audit import log as audit
from gateway.db import DriverStatement, integrity_errors
from gateway.envelope import (
    Recipient,
    Rejected,
    authenticate,
    decrypt_and_validate,
    make_receipt,
    seal,
)
from gateway.group_commit import GroupCommit
from gateway.inbox import receive
from gateway.models import AuditEntry, InboundMessage, InboundRejection
from keys.keypair import EncryptionKeyPair
from schemas import common
from schemas.examples import EXAMPLES, example_alert
from schemas.registry import validate_body
from tests.conftest import PASSPHRASE
from tests.test_exchange import deliveries, inbox_count, submit
from tests.test_group_commit import cut_connection
from tests.test_trust_follow import hints as trust_hints
from tests.test_trust_follow import next_version

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


def test_the_insert_decides_step_6_and_only_a_copy_reads_the_stored_row(
    make_federation, monkeypatch
):
    """A new envelope is stored by one statement (its insert meets no row); a second
    copy's insert meets the first (committed, or committing in another process, which
    the insert waits for) and inserts nothing, and only then is the stored copy read,
    whose receipt is the answer."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    real_lookup = inbox._stored
    lookups: list[str] = []

    def counted(connection, envelope):
        lookups.append(envelope.header.id)
        return real_lookup(connection, envelope)

    monkeypatch.setattr(inbox, "_stored", counted)
    first = receive(kg.node, wire)
    assert first.status == 200
    assert lookups == []
    second = receive(kg.node, wire)
    assert (second.status, second.body) == (200, first.body)
    assert lookups == [sent["id"]]
    assert inbox_count(kg, "KZ", sent["id"]) == 1


def test_a_conflict_without_a_stored_row_is_an_error_of_this_node_and_a_retry_heals_it(
    make_federation, monkeypatch
):
    """Never seen (the insert met a row that the lookup then does not find): the
    request fails as this node's error (nothing stored, nothing answered as accepted),
    and the sender's retry gets the stored receipt."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    first = receive(kg.node, wire)
    real_lookup = inbox._stored
    missed: list[bool] = []

    def miss_once(connection, envelope):
        if missed:
            return real_lookup(connection, envelope)
        missed.append(True)
        return None

    monkeypatch.setattr(inbox, "_stored", miss_once)
    with pytest.raises(RuntimeError, match="conflicts with no stored row"):
        receive(kg.node, wire)
    again = receive(kg.node, wire)
    assert (again.status, again.body) == (200, first.body)
    assert inbox_count(kg, "KZ", sent["id"]) == 1


# ----------------------------------------------------- step 6 after steps 7 and 8


def _sealed_by(member, kid: str, public: bytes, message_id: str | None = None) -> bytes:
    """A new alert from ``member`` to KG under the encryption key (kid, public)."""
    return seal(
        typ="alert/1",
        body=example_alert(),
        sender=member.node.id,
        signing_key=member.keys.current_signing,
        recipients=[Recipient("KG", kid, public)],
        tl=1,
        message_id=message_id,
    ).to_wire()


def _one_accepted(make_federation):
    """KZ and KG, and an envelope from KZ that KG has accepted: its bytes and answer."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    first = receive(kg.node, wire)
    assert first.status == 200
    return kz, kg, wire, first


def _refusals(member) -> list[str]:
    with member.node.sessions() as session:
        return list(session.scalars(select(InboundRejection.code).order_by(InboundRejection.id)))


def test_a_retry_gets_its_receipt_even_when_steps_7_and_8_would_now_refuse_it(make_federation):
    """The receive path runs step 6 after 7 and 8, with the insert; a refusal from 7
    or 8 is only given once step 6 has found nothing. Here the sender is suspended
    after its envelope was accepted: a resend is still a retry, answered with the
    stored receipt, with nothing refused or recorded."""
    kz, kg, wire, first = _one_accepted(make_federation)
    with kg.node.sessions() as session:
        sovereignty.suspend(session, scope="node", value="KZ", reason="test", who="officer")
        session.commit()
    kg.node.forget_suspensions()
    with kg.node.sessions() as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
    again = receive(kg.node, wire)
    assert (again.status, again.body) == (200, first.body)
    assert _refusals(kg) == []
    with kg.node.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == entries
    # A new envelope from the suspended sender is refused by step 8.
    submit(kz, ["KG"])
    refused = receive(kg.node, deliveries(kz)[-1].envelope.wire)
    assert refused.status == 403 and _refusals(kg) == ["policy-denied"]


def test_a_replay_that_step_7_cannot_open_is_refused_as_a_replay(make_federation):
    """Same (sender, id), other content, and sealed to a key this node does not
    have: step 7 would say not-a-recipient, but step 6 comes first: replay."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    assert receive(kg.node, deliveries(kz)[0].envelope.wire).status == 200
    stranger = EncryptionKeyPair.generate()
    other = _sealed_by(kz, stranger.kid, stranger.public, sent["id"])
    answer = receive(kg.node, other)
    assert answer.status == 409 and _refusals(kg) == ["replay"]
    # The same envelope under a new id is not a replay: step 7 refuses it.
    fresh = _sealed_by(kz, stranger.kid, stranger.public)
    assert receive(kg.node, fresh).status == 400
    assert _refusals(kg) == ["replay", "not-a-recipient"]


def _accepting(node, raw: bytes) -> inbox._Accepting:
    """``raw`` through steps 1 to 8 on ``node``, with its receipt: ready for storing."""
    at = int(time.time())
    envelope = authenticate(raw, trust=node.trust().keys, now=at, limits=node.limits)
    opened = decrypt_and_validate(envelope, node.id, node.keys.encryption_keys)
    signing_key = node.signing_pair(at)
    receipt = make_receipt(envelope, receiver=node.id, signing_key=signing_key, at=at)
    return inbox._Accepting(node, raw, opened, receipt, at, "default")


def test_a_retry_is_answered_even_when_steps_7_and_8_fail_on_this_nodes_side(
    make_federation, monkeypatch
):
    """Not only a refusal: an error of the node's own in steps 7 and 8 (here reading
    its suspensions) does not stop a retry from getting its stored receipt; a new
    envelope meets the error."""
    kz, kg, wire, first = _one_accepted(make_federation)

    def broken() -> list:
        raise RuntimeError("the suspensions table cannot be read")

    monkeypatch.setattr(kg.node, "suspensions", broken)
    again = receive(kg.node, wire)
    assert (again.status, again.body) == (200, first.body)
    submit(kz, ["KG"])
    with pytest.raises(RuntimeError, match="cannot be read"):
        receive(kg.node, deliveries(kz)[-1].envelope.wire)
    assert _refusals(kg) == []


@pytest.mark.parametrize("databases", ["postgresql"], indirect=True)
def test_a_group_and_another_process_storing_the_same_envelope_do_not_deadlock(
    make_federation,
):
    """On PostgreSQL a transaction storing messages takes the audit lock before its
    first insert and holds it to the commit. When another process is storing a copy of
    one of a group's envelopes, the group waits for the lock (not for that copy's row,
    lock in hand), the other process appends and commits, and the group's insert of
    that copy inserts nothing and answers with the stored receipt, instead of both
    waiting for each other until PostgreSQL breaks the deadlock."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    submit(kz, ["KG"])
    first, second = (_accepting(kg.node, d.envelope.wire) for d in deliveries(kz))
    outcome: dict[str, object] = {}

    def group_of_two() -> None:
        # The node's own group commit's transaction (the audit lock is its ``first``).
        node_group = inbox._accepting(kg.node)
        with kg.node.engine.connect() as connection:
            outcome["pid"] = connection.connection.dbapi_connection.info.backend_pid
            try:
                outcome["answers"] = node_group._in_transaction(connection, lambda: [first, second])
                outcome["group"] = "committed"
            except Exception as error:  # noqa: BLE001 - kept for the assertions
                outcome["group"] = error

    with kg.node.engine.connect() as other:  # "another process", storing ``second``
        other.begin()
        audit.lock(other)
        row_id = inbox._insert(other, second)
        writer = threading.Thread(target=group_of_two)
        writer.start()
        deadline = time.monotonic() + 30
        # The audit lock, before any insert: not the other copy's row (as it would be
        # had the group inserted first), which it could wait for with the lock in hand.
        while not _waits_for_the_audit_lock(kg.node, outcome.get("pid")):
            assert time.monotonic() < deadline and writer.is_alive(), outcome
            time.sleep(0.01)
        inbox._record(other, second, row_id)
        other.commit()
        writer.join(timeout=30)
    assert outcome["group"] == "committed", outcome
    assert outcome["answers"] == [first.receipt, second.receipt]
    assert inbox_count(kg, "KZ") == 2


def test_an_inbox_reader_paging_by_id_never_passes_a_message_stored_later(make_federation):
    """Two worker processes store one message each; the first has inserted its row
    and not yet committed when the second stores its own. A reader paging by id (the
    agency API's ``after``) between the two commits must not get past the first
    message's id before that message is committed: the second waits (for the audit
    lock on PostgreSQL, for the write lock on SQLite) and takes the next id after."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    submit(kz, ["KG"])
    early, late = (d.envelope.wire for d in deliveries(kz))
    inserted, release = threading.Event(), threading.Event()
    writer_a: list[threading.Thread] = []
    insert_row = inbox._insert

    def paused_after_insert(connection, item):  # type: ignore[no-untyped-def]
        row_id = insert_row(connection, item)
        if threading.current_thread() in writer_a:
            inserted.set()
            assert release.wait(timeout=30)
        return row_id

    answers: dict[str, int] = {}
    # Worker process A: its own group commit (its own connection), paused inside.
    process_a = inbox.accepting_group(kg.node)

    early_item, late_id = _accepting(kg.node, early), _accepting(kg.node, late).opened.header.id

    def store_early() -> None:
        process_a.run(early_item)
        answers["early"] = 200

    def store_late() -> None:  # worker process B: the node's own group commit
        answers["late"] = receive(kg.node, late).status

    inbox._insert = paused_after_insert
    try:
        writer_a.append(threading.Thread(target=store_early))
        writer_a[0].start()
        assert inserted.wait(timeout=30)
        writer_b = threading.Thread(target=store_late)
        writer_b.start()
        writer_b.join(timeout=2)  # B would be done by now if nothing held it
        with kg.node.sessions() as session:
            cursor = inbox.inbox_page(session, after=0).next_after
        release.set()
        writer_a[0].join(timeout=30)
        writer_b.join(timeout=30)
    finally:
        inbox._insert = insert_row
        release.set()
        process_a._held.close()  # its connection back to the pool, not left to collection
    assert answers == {"early": 200, "late": 200}
    with kg.node.sessions() as session:
        rest = inbox.inbox_page(session, after=cursor).messages
        ids = {m.envelope_id: m.id for m in inbox.inbox_page(session, after=0).messages}
    assert ids[early_item.opened.header.id] < ids[late_id]
    assert len(rest) == 2  # neither was passed while the first was not committed


def _waits_for_the_audit_lock(node, pid: int | None) -> bool:
    if pid is None:
        return False
    with node.engine.connect() as connection:
        waiting = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_locks WHERE pid = %(pid)s AND locktype = 'advisory' "
            "AND NOT granted",
            {"pid": pid},
        ).scalar()
    return bool(waiting)


def test_two_copies_in_one_group_are_an_accept_and_a_retry_or_a_replay(make_federation):
    """Step 6 runs in the group's transaction, after the inserts before it: a second
    copy of an envelope in the same group is a retry of the first, a second envelope
    with the same id and other content a replay; one row and one audit entry."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    key = kz.node.trust().keys.encryption_key("KG", int(time.time()))
    other = _sealed_by(kz, key.kid, key.pub, sent["id"])
    node = kg.node
    group = [_accepting(node, wire), _accepting(node, wire), _accepting(node, other)]
    with node.sessions() as session:
        entries = session.scalar(select(func.count()).select_from(AuditEntry))
    with node.engine.connect() as connection:
        connection.begin()
        audit.lock(connection)
        answers = inbox._store_accepted(connection, group)
        connection.commit()
    assert answers[0] == answers[1] == group[0].receipt
    assert isinstance(answers[2], Rejected) and answers[2].code == "replay"
    assert inbox_count(kg, "KZ", sent["id"]) == 1
    with node.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == entries + 1


def test_a_commit_lost_after_it_went_through_answers_as_if_nothing_had_happened(
    make_federation, monkeypatch
):
    """The connection is lost as the accepting transaction commits (PostgreSQL
    restarting, say): the commit went through, but the node is told it failed. The
    group is written again on a new connection, where step 6 finds what that commit
    stored: the peer gets its receipt, the message is stored and recorded once, and
    the newer trust list the envelope announced is still noted."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    kz.node.install_trust_list(next_version(fed, kz.node.trust()))
    submit(kz, ["KG"])
    kz.node.install_trust_list(next_version(fed, kz.node.trust()))
    second = submit(kz, ["KG"])
    first_wire, second_wire = (d.envelope.wire for d in deliveries(kz))
    assert receive(kg.node, first_wire).status == 200  # the group commit's connection
    assert trust_hints(kg) == {"KZ": (2, None)}

    commit_once = GroupCommit._in_transaction
    lost: list[bool] = []

    def commit_then_lose_the_connection(self, connection, take):
        results = commit_once(self, connection, take)
        if not lost:
            lost.append(True)
            driver = connection.connection.dbapi_connection
            cut_connection(kg.node.engine, driver)
            driver.execute("SELECT 1")  # the driver's own error, as from a lost COMMIT
        return results

    monkeypatch.setattr(GroupCommit, "_in_transaction", commit_then_lose_the_connection)
    answer = receive(kg.node, second_wire)
    assert lost == [True]
    assert answer.status == 200
    with kg.node.sessions() as session:
        stored = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == second["id"])
        ).all()
        accepted = [
            entry
            for entry in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "envelope-accepted")
            )
            if second["id"].encode() in entry
        ]
    assert [bytes(m.receipt) for m in stored] == [answer.body]
    assert len(accepted) == 1
    assert trust_hints(kg) == {"KZ": (3, None)}


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
    blank_or_forbidden = text.strip() == "" or common.FORBIDDEN_SINGLE_LINE.search(text)
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


def test_a_worker_freezes_what_it_built_before_serving(make_federation):
    """gateway.wsgi (what gunicorn imports in each worker) builds the app and then
    moves every object built so far out of the cyclic collector's view."""
    member = make_federation(("KZ",), serve=False)["KZ"]
    env = dict(os.environ, GATEWAY_INSTANCE=str(member.instance), GATEWAY_KEY_PASSPHRASE=PASSPHRASE)
    shown = subprocess.run(
        [sys.executable, "-c", "import gc, gateway.wsgi; print(gc.get_freeze_count())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(shown.stdout.split()[-1]) > 10_000
