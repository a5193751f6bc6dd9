"""Retention: payloads go when their retention ends (capped per type by the policy);
metadata, receipts and audit evidence stay, and the evidence still verifies."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text, update

from gateway import purge, sovereignty
from gateway.audit import evidence
from gateway.audit import log as audit
from gateway.cli import main
from gateway.dispatcher import Dispatcher
from gateway.envelope import seal
from gateway.inbox import receive
from gateway.models import (
    AuditEntry,
    Delivery,
    DeliveryState,
    InboundMessage,
    InboundRejection,
    OutboundMessage,
    SealedEnvelope,
)
from gateway.outbox import _recipients
from schemas import xb1json
from schemas.examples import example_alert
from tests.test_exchange import submit as send
from tests.test_trust_follow import submit

AGREEMENT = '[[agreement]]\nid = "a"\npeer = "{peer}"\ntypes = ["alert/1"]\n'
RETENTION = '[retention]\n"alert/1" = {days}\n'


def write_policy(member, peer, days):
    text = "version = 1\n" + AGREEMENT.format(peer=peer) + RETENTION.format(days=days)
    (member.instance / "policy.toml").write_text(text, encoding="utf-8")


DAY = purge.DAY


def _corrections_agreed(fed, retention=""):
    """KZ and KG agree alerts and their corrections, alerts kept 30 days (and what
    ``retention`` adds to the [retention] table)."""
    for member, peer in ((fed["KZ"], "KG"), (fed["KG"], "KZ")):
        policy = AGREEMENT.format(peer=peer).replace('"alert/1"]', '"alert/1", "correction/1"]')
        text = "version = 1\n" + policy + RETENTION.format(days=30) + retention
        (member.instance / "policy.toml").write_text(text, encoding="utf-8")


@pytest.fixture
def exchanged(make_federation):
    fed = make_federation(("KZ", "KG"))
    write_policy(fed["KZ"], "KG", 30)
    write_policy(fed["KG"], "KZ", 30)
    message_id = submit(fed["KZ"], ["KG"])  # the example alert asks for 730 days
    [outcome] = Dispatcher(fed["KZ"].node).run_once()
    assert outcome.state == "delivered"
    return fed, message_id


def purged_entries(member):
    with member.node.sessions() as session:
        return [
            xb1json.loads(raw)
            for raw in session.scalars(select(AuditEntry.entry).where(AuditEntry.kind == "purged"))
        ]


def test_a_received_payload_goes_and_the_evidence_stays(exchanged):
    fed, message_id = exchanged
    kg = fed["KG"]
    policy = kg.node.policy()
    with kg.node.sessions() as session:
        received_at = session.scalars(select(InboundMessage.received_at)).one()
        ends = received_at + 30 * DAY  # the policy's cap, not the body's 730 days
        assert purge.due(session, policy, ends - 1) == []
        [item] = purge.run(session, policy, now=ends, by="test")
        assert (item.direction, item.message, item.part) == (
            "received",
            message_id,
            "body and envelope",
        )
        assert purge.run(session, policy, now=ends + DAY, by="test") == []  # once only
    with kg.node.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        assert (row.body_json, row.wire, row.purged_at) == (None, b"", ends)
        assert row.receipt and row.ph and row.envelope_id == message_id  # metadata stays
    [entry] = purged_entries(kg)
    assert (entry["id"], entry["retention_ends"], entry["by"]) == (message_id, ends, "test")
    assert entry["sender"] == "KZ"  # whose id it is (ids are unique per sender only)
    view = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"][0]
    assert view["body"] is None and view["purged_at"] == ends

    audit.checkpoint(kg.node)
    with kg.node.sessions() as session:
        assert audit.verify(session, kg.node.trust(), "KG").ok
    bundle = json.loads(json.dumps(evidence.export(kg.node, message_id)))
    assert bundle["envelopes"] == []
    summary = evidence.check(bundle)
    assert "receipt from KG accepted" in summary["shown"] and "payload purged" in summary["shown"]


def test_a_sent_envelope_waits_for_its_deliveries(exchanged):
    fed, message_id = exchanged
    kz = fed["KZ"]
    policy = kz.node.policy()
    with kz.node.sessions() as session:
        created = session.get(OutboundMessage, message_id).created_at
        delivery = session.scalars(select(Delivery)).one()
        delivery.state = DeliveryState.RETRYING  # as if the peer were still unreachable
        session.commit()
        [item] = purge.run(session, policy, now=created + 30 * DAY, by="test")
        assert item.part == "body"
        assert session.get(OutboundMessage, message_id).body_json is None
        assert session.scalars(select(SealedEnvelope.wire)).one() != b""
        assert purge.run(session, policy, now=created + 31 * DAY, by="test") == []

        delivery = session.scalars(select(Delivery)).one()
        delivery.state = DeliveryState.REJECTED
        session.commit()
        [item] = purge.run(session, policy, now=created + 32 * DAY, by="test")
        assert item.part == "envelope"
        assert session.scalars(select(SealedEnvelope.wire)).one() == b""
        delivery_id = delivery.id
    answer = kz.client().post(f"/api/v1/deliveries/{delivery_id}/retry", headers=kz.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "purged")
    assert [e["part"] for e in purged_entries(kz)] == ["body", "envelope"]


def test_purge_command_and_dry_run(exchanged):
    fed, message_id = exchanged
    kg = fed["KG"]
    write_policy(kg, "KZ", 1)
    runner = CliRunner()
    args = ["--instance", str(kg.instance), "purge"]
    result = runner.invoke(main, [*args, "--dry-run"])
    assert result.exit_code == 0 and "Nothing is due" in result.stdout  # not a day old yet
    with kg.node.sessions() as session:
        row = session.scalars(select(InboundMessage)).one()
        row.received_at -= 2 * DAY
        session.commit()
    result = runner.invoke(main, [*args, "--dry-run", "--json"])
    assert [item["message"] for item in json.loads(result.stdout)] == [message_id]
    assert purged_entries(kg) == []  # a dry run changes nothing
    result = runner.invoke(main, args)
    assert (
        result.exit_code == 0
        and f"purged body and envelope of received alert/1 {message_id}" in result.stdout
    )
    assert len(purged_entries(kg)) == 1


def test_policy_commands(exchanged, tmp_path):
    fed, _ = exchanged
    runner = CliRunner()
    shown = runner.invoke(main, ["--instance", str(fed["KG"].instance), "policy", "show"])
    assert shown.exit_code == 0 and "alert/1: 30" in shown.stdout
    assert "ngo-no-suspect-data" in shown.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[[agreement]]\nid = 'x'\npeer = 'kg'\n", encoding="utf-8")
    checked = runner.invoke(
        main, ["--instance", str(fed["KG"].instance), "policy", "check", str(bad)]
    )
    assert checked.exit_code == 2
    assert "error [policy-invalid]" in checked.stderr and "peer must be a node id" in checked.stderr


def test_a_purge_touches_only_its_own_senders_message(make_federation):
    """Envelope ids are unique per sender only: a member reusing another's id cannot
    make this node purge (or forget the H2 data of) the other's message."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    message_id = submit(kz, ["KG"])
    Dispatcher(kz.node).run_once()
    at = int(time.time())
    twin = seal(
        typ="alert/1",
        body=example_alert(retention_days=1),
        sender="UZ",
        signing_key=uz.node.signing_pair(at),
        recipients=_recipients(uz.node, ["KG"], at),
        tl=uz.node.trust().version,
        iat=at,
        ttl=600,
        message_id=message_id,
    )
    assert kg.client().post("/xb1/envelopes", data=twin.to_wire()).status_code == 200
    with kg.node.sessions() as session:
        [item] = purge.run(session, kg.node.policy(), now=at + 2 * DAY, by="test")
        assert item.row_id is not None
        rows = {r.sender: r for r in session.scalars(select(InboundMessage))}
        assert rows["UZ"].body_json is None and rows["KZ"].body_json is not None


def _files_hold(member, marker: bytes) -> list[str]:
    """The node's SQLite files (database, write-ahead log) whose bytes contain ``marker``."""
    database = member.node.engine.url.database
    found = []
    for path in (database, database + "-wal"):
        if os.path.exists(path):
            with open(path, "rb") as stored:
                if marker in stored.read():
                    found.append(path)
    return found


def _refusals(member) -> list[InboundRejection]:
    with member.node.sessions() as session:
        return list(session.scalars(select(InboundRejection).order_by(InboundRejection.id)))


def test_the_kept_bytes_of_refused_envelopes_go_and_the_refusals_stay(make_federation):
    """Refused envelopes are kept byte for byte for ``[retention] refused`` days (30
    by default) from their arrival, then only their bytes are erased: time, code,
    explanation, size, claimed sender and id and the signed receipt stay. One audit
    entry per run says how many."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    garbage = b'{"not": "an envelope", "marker": "' + os.urandom(8).hex().encode() + b'"}'
    assert receive(kg.node, garbage).status == 400  # malformed: unauthenticated
    with kg.node.sessions() as session:
        sovereignty.suspend(session, scope="node", value="KZ", reason="test", who="officer")
        session.commit()
    kg.node.forget_suspensions()
    sent = send(kz, ["KG"])
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied")  # signed receipt
    before = _refusals(kg)
    assert [(r.code, r.wire is not None, r.receipt is not None) for r in before] == [
        ("malformed", True, False),
        ("policy-denied", True, True),
    ]
    assert before[0].wire == garbage
    policy = kg.node.policy()
    ends = max(r.received_at for r in before) + 30 * DAY
    with kg.node.sessions() as session:
        assert len(purge.due(session, policy, ends - 1)) < 2
        purged = purge.run(session, policy, now=ends, by="test")
    assert sorted((p.direction, p.message, p.row_id) for p in purged) == [
        ("refused", "-", before[0].id),
        ("refused", sent["id"], before[1].id),
    ]
    after = _refusals(kg)
    assert [r.wire for r in after] == [None, None]
    keep = ("received_at", "code", "detail", "sender", "envelope_id", "authenticated", "size")
    keep += ("receipt",)
    assert [[getattr(r, k) for k in keep] for r in after] == [
        [getattr(r, k) for k in keep] for r in before
    ]
    [entry] = [e for e in purged_entries(kg) if e["direction"] == "refused"]
    assert entry == {
        "kind": "purged",
        "at": ends,
        "by": "test",
        "direction": "refused",
        "part": "envelope",
        "count": 2,
        "retention_days": 30,
        "received_until": ends - 30 * DAY,
    }
    with kg.node.sessions() as session:
        assert purge.run(session, policy, now=ends + DAY, by="test") == []  # once only
        # A second dispatcher that listed the same refusals before the first erased
        # them erases and records nothing.
        assert purge._purge_refused(session, purged, ends, by="late", days=30) == []
    assert len([e for e in purged_entries(kg) if e["direction"] == "refused"]) == 1


def test_the_policy_sets_how_long_refused_envelopes_are_kept(make_federation):
    kg = make_federation(("KG",), serve=False)["KG"]
    (kg.instance / "policy.toml").write_text("version = 1\n[retention]\nrefused = 2\n")
    assert receive(kg.node, b"[]").status == 400
    [refusal] = _refusals(kg)
    policy = kg.node.policy()
    with kg.node.sessions() as session:
        assert purge.due(session, policy, refusal.received_at + 2 * DAY - 1) == []
        [item] = purge.due(session, policy, refusal.received_at + 2 * DAY)
    assert (item.direction, item.retention_ends) == ("refused", refusal.received_at + 2 * DAY)
    result = CliRunner().invoke(main, ["--instance", str(kg.instance), "policy", "show"])
    assert "bytes of refused envelopes: 2" in result.output


# SQLite only: PostgreSQL keeps dead row versions until vacuum (docs/security.md).
@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
def test_on_sqlite_a_purged_payload_is_gone_from_the_files(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    write_policy(kz, "KG", 30)
    write_policy(kg, "KZ", 30)
    marker = "Marker-" + os.urandom(8).hex()
    body = example_alert()
    body["summary"] = f"{body['summary']} {marker}"
    send(kz, ["KG"], body)
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
    # ... and a refused envelope holding it too, kept byte for byte for 30 days.
    assert receive(kg.node, b'{"refused": "' + marker.encode() + b'"}').status == 400
    for member in (kz, kg):
        assert _files_hold(member, marker.encode()), "the test must see the marker first"
        later = int(time.time()) + 31 * DAY
        with member.node.sessions() as session:
            assert purge.run(session, member.node.policy(), now=later, by="test")
        assert _files_hold(member, marker.encode()) == []


@pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
def test_an_open_reader_delays_emptying_the_log_by_a_second_at_most(make_federation, caplog):
    node = make_federation(("KZ",), serve=False)["KZ"].node
    with node.sessions() as session:
        audit.record(session, "test-entry", note="in the log")
        session.commit()
    with node.engine.connect() as reader:
        reader.exec_driver_sql("BEGIN")
        reader.exec_driver_sql("SELECT COUNT(*) FROM audit_entries").all()  # holds a snapshot
        began = time.monotonic()
        with node.sessions() as session:
            assert purge.clear_write_ahead_log(session) is False
        assert time.monotonic() - began < 5  # not the 30 s of the node's busy timeout
        assert "could not be emptied" in caplog.text
        reader.exec_driver_sql("ROLLBACK")
    with node.sessions() as session:
        assert purge.clear_write_ahead_log(session) is True
        # The session's connection waits as long as before for ordinary writes.
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_a_delivery_of_a_purged_message_is_not_retried(make_federation):
    """With two recipients, the envelope bytes stay for the delivery still open after
    the body is purged; they do not make a rejected delivery to the other one
    retryable once the message's retention has ended."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    (kg.instance / "policy.toml").write_text("version = 1\n", encoding="utf-8")  # no agreement
    uz.server.stop()  # UZ's delivery stays open
    sent = send(kz, ["KG", "UZ"], example_alert(retention_days=1))
    Dispatcher(kz.node).run_once()
    with kz.node.sessions() as session:
        purge.run(session, kz.node.policy(), now=int(time.time()) + 2 * 86_400, by="test")
    rejected = next(d["id"] for d in sent["deliveries"] if d["recipient"] == "KG")
    answer = kz.client().post(f"/api/v1/deliveries/{rejected}/retry", headers=kz.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "purged")


def test_a_purged_retrying_delivery_goes_on_as_scheduled_and_says_so(make_federation):
    """A delivery still open at the purge keeps its envelope and goes out at its own
    schedule; a retry by hand is refused, saying so (it said "not sent again")."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    kg.server.stop()
    sent = send(kz, ["KG"], example_alert(retention_days=1))
    [retrying] = Dispatcher(kz.node).run_once()
    assert retrying.state == "retrying"
    later = int(time.time()) + 2 * 86_400  # retention over, the envelope's week not
    with kz.node.sessions() as session:
        [item] = purge.run(session, kz.node.policy(), now=later, by="test")
    assert item.part == "body"
    [delivery] = sent["deliveries"]
    answer = kz.client().post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=kz.auth())
    refused = answer.get_json()
    assert (answer.status_code, refused["error"]) == (409, "purged")
    assert "attempts go on as scheduled" in refused["message"]
    assert "not sent again" not in refused["message"]
    kg.server.start()
    [delivered] = Dispatcher(kz.node).run_once(now=later)
    assert delivered.state == "delivered"


def test_a_retry_asked_for_while_a_purge_runs_keeps_the_envelope_it_needs(
    make_federation, monkeypatch
):
    """The purge found no open delivery, then an operator put the rejected one back in
    the queue before the purge erased anything: the envelope stays for it (the body
    goes), so the dispatcher does not meet an empty envelope; it goes once the delivery
    has ended. A retry after the purge is refused."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    (kg.instance / "policy.toml").write_text("version = 1\n", encoding="utf-8")  # no agreement
    sent = send(kz, ["KG"], example_alert(retention_days=1))
    [rejected] = Dispatcher(kz.node).run_once()
    assert rejected.state == "rejected"
    [delivery] = sent["deliveries"]
    later = int(time.time()) + 2 * DAY
    due = purge.due

    def due_then_a_retry(session, policy, now):
        found = due(session, policy, now)
        monkeypatch.undo()
        answer = kz.client().post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=kz.auth())
        assert answer.status_code == 200, answer.get_json()
        return found

    monkeypatch.setattr(purge, "due", due_then_a_retry)
    with kz.node.sessions() as session:
        [item] = purge.run(session, kz.node.policy(), now=later, by="test")
    assert (item.message, item.part) == (sent["id"], "body")
    with kz.node.sessions() as session:
        message = session.get(OutboundMessage, sent["id"])
        assert message.body_json is None and message.purged_at == later
        assert all(envelope.wire for envelope in message.envelopes)
    [again] = Dispatcher(kz.node).run_once()
    assert again.state == "rejected"  # sent, and refused again: not an empty envelope
    with kz.node.sessions() as session:
        [item] = purge.run(session, kz.node.policy(), now=later + 1, by="test")
    assert item.part == "envelope"
    answer = kz.client().post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=kz.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "purged")


def test_a_retry_meeting_an_envelope_erased_meanwhile_is_refused(make_federation, monkeypatch):
    """The other order: a purge erased the envelope after the retry read the delivery
    and before it put it back in the queue. The retry changes nothing."""
    from gateway import outbox

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    (kg.instance / "policy.toml").write_text("version = 1\n", encoding="utf-8")  # no agreement
    sent = send(kz, ["KG"], example_alert(retention_days=1))
    assert Dispatcher(kz.node).run_once()[0].state == "rejected"
    [delivery] = sent["deliveries"]
    update = outbox.update

    def erased_first(table):
        if table is Delivery:
            with kz.node.engine.begin() as connection:
                connection.execute(update(SealedEnvelope).values(wire=b""))
        return update(table)

    monkeypatch.setattr(outbox, "update", erased_first)
    answer = kz.client().post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=kz.auth())
    assert (answer.status_code, answer.get_json()["error"]) == (409, "not-retryable")
    with kz.node.sessions() as session:
        assert session.get(Delivery, delivery["id"]).state == "rejected"


def test_a_queued_delivery_whose_envelope_a_purge_erased_ends_as_purged(make_federation):
    """What is left of that race on PostgreSQL (the purge erases the envelope after the
    retry's statement, before its commit): the dispatcher ends the delivery, once and
    visibly, instead of failing on the empty envelope at every attempt."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    fed["KG"].server.stop()
    sent = send(kz, ["KG"], example_alert(retention_days=1))
    with kz.node.engine.begin() as connection:
        connection.execute(update(SealedEnvelope).values(wire=b""))
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("expired", "purged")
    [delivery] = sent["deliveries"]
    with kz.node.sessions() as session:
        assert session.get(Delivery, delivery["id"]).state == "expired"


def test_two_purge_runs_at_once_purge_and_record_each_message_once(exchanged, monkeypatch):
    """The dispatcher's hourly run and an operator's `gateway purge` may both find the
    same messages due: the slower one changes nothing and records nothing."""
    fed, message_id = exchanged
    later = int(time.time()) + 40 * DAY
    for member in (fed["KZ"], fed["KG"]):
        policy = member.node.policy()
        with member.node.sessions() as session:
            seen_by_both = purge.due(session, policy, later)
        assert [item.message for item in seen_by_both] == [message_id]
        with member.node.sessions() as session:
            assert purge.run(session, policy, now=later, by="dispatcher") == seen_by_both
        with monkeypatch.context() as patch, member.node.sessions() as session:
            patch.setattr(purge, "due", lambda *args, stale=seen_by_both: stale)
            assert purge.run(session, policy, now=later + 1, by="operator") == []
        [entry] = purged_entries(member)
        assert (entry["id"], entry["by"]) == (message_id, "dispatcher")


def test_a_purge_takes_the_audit_lock_before_it_changes_a_row(exchanged, monkeypatch):
    """On PostgreSQL the receive path appends to the audit log first and changes rows
    after (a correction changes its original): a purge that changed the row first and
    then waited for the audit lock could deadlock with it."""
    fed, message_id = exchanged
    kg = fed["KG"]
    steps = []
    take_lock, erase = audit.lock, purge._erase_received
    monkeypatch.setattr(audit, "lock", lambda session: (steps.append("lock"), take_lock(session)))
    monkeypatch.setattr(
        purge,
        "_erase_received",
        lambda session, row_id, at: steps.append("change") or erase(session, row_id, at),
    )
    with kg.node.sessions() as session:
        [item] = purge.run(session, kg.node.policy(), now=int(time.time()) + 40 * DAY, by="t")
    assert item.message == message_id
    assert steps[:2] == ["lock", "change"]


def test_a_message_sealed_again_is_purged_and_recorded_once(exchanged):
    """A message with two envelopes (sealed again for a recipient) is one message:
    its envelopes go in one purge item, and the report lists it once."""
    fed, message_id = exchanged
    kz = fed["KZ"]
    policy = kz.node.policy()
    with kz.node.sessions() as session:
        created = session.get(OutboundMessage, message_id).created_at
        first = session.get(SealedEnvelope, message_id)
        session.add(
            SealedEnvelope(
                id="01a229ff-0000-7000-8000-000000000001",
                message_id=message_id,
                wire=first.wire,
                ph=first.ph,
                ch=first.ch,
                iat=first.iat,
                exp=first.exp,
                tl=first.tl,
            )
        )
        delivery = session.scalars(select(Delivery)).one()
        delivery.state = DeliveryState.RETRYING
        session.commit()
        [item] = purge.run(session, policy, now=created + 30 * DAY, by="test")
        assert item.part == "body"
        delivery = session.scalars(select(Delivery)).one()
        delivery.state = DeliveryState.REJECTED
        session.commit()
        assert [p.part for p in purge.due(session, policy, created + 32 * DAY)] == ["envelope"]
        [item] = purge.run(session, policy, now=created + 32 * DAY, by="test")
        assert set(session.scalars(select(SealedEnvelope.wire))) == {b""}
    assert [e["part"] for e in purged_entries(kz)] == ["body", "envelope"]


def _refused_then_accepted(fed):
    """KZ's alert is refused by KG (KG suspended KZ), then, the suspension lifted, sent
    again byte for byte and accepted: KG keeps the bytes of the refused copy too.
    Returns the message id."""
    kz, kg = fed["KZ"], fed["KG"]
    with kg.node.sessions() as session:
        decision = sovereignty.suspend(
            session, scope="node", value="KZ", reason="test", who="officer"
        ).id
        session.commit()
    kg.node.forget_suspensions()
    sent = send(kz, ["KG"])
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied")
    with kg.node.sessions() as session:
        sovereignty.lift(session, decision, reason="cleared", who="officer")
        session.commit()
    kg.node.forget_suspensions()
    retried = kz.client().post(
        f"/api/v1/deliveries/{sent['deliveries'][0]['id']}/retry", headers=kz.auth()
    )
    assert retried.status_code == 200, retried.get_json()
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
    [refused] = _refusals(kg)
    assert (refused.envelope_id, refused.wire is not None) == (sent["id"], True)
    return sent["id"]


def test_a_withdrawal_erases_what_was_kept_of_refused_copies_too(make_federation):
    """The refused copy of an envelope later accepted holds the same data, decryptable
    with the node's keys: when the message is withdrawn, its bytes go with it (the
    refusal, its code and receipt stay)."""
    from tests.test_dispatch_faults import _withdraw

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = _refused_then_accepted(fed)
    _withdraw(kz, message_id)
    assert [o.state for o in Dispatcher(kz.node).run_once()] == ["delivered"]
    with kg.node.sessions() as session:
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == message_id)
        ).one()
        assert (row.state, row.wire) == ("withdrawn", b"")
    [refused] = _refusals(kg)
    assert (refused.code, refused.wire, refused.receipt is not None) == (
        "policy-denied",
        None,
        True,
    )


def test_a_purge_erases_what_was_kept_of_refused_copies_too(make_federation):
    """A message whose retention (7 days) ends before the refused copies' (30 days):
    the purge of the message erases the bytes of its refused copies with it."""
    fed = make_federation(("KZ", "KG"))
    write_policy(fed["KZ"], "KG", 7)
    write_policy(fed["KG"], "KZ", 7)
    kg = fed["KG"]
    message_id = _refused_then_accepted(fed)
    with kg.node.sessions() as session:
        received_at = session.scalars(
            select(InboundMessage.received_at).where(InboundMessage.envelope_id == message_id)
        ).one()
        [item] = purge.run(session, kg.node.policy(), now=received_at + 7 * DAY, by="test")
    assert (item.direction, item.message) == ("received", message_id)
    [refused] = _refusals(kg)
    assert (refused.code, refused.wire) == ("policy-denied", None)


def test_a_purge_takes_the_corrections_of_a_message_with_it(exchanged):
    """A correction that came after its original carries the same data (corrected),
    with a retention counted from its own, later arrival: it goes when the original's
    retention ends, and the agencies no longer read the data through it."""
    from schemas.examples import example_correction

    fed, message_id = exchanged
    kz, kg = fed["KZ"], fed["KG"]
    _corrections_agreed(fed)
    fix = example_correction(refers_to=message_id)
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": fix}
    )
    assert answer.status_code == 202, answer.get_json()
    Dispatcher(kz.node).run_once()
    with kg.node.sessions() as session:  # the original arrived ten days before it
        session.execute(
            update(InboundMessage)
            .where(InboundMessage.envelope_id == message_id)
            .values(received_at=InboundMessage.received_at - 10 * DAY)
        )
        session.commit()
        original = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == message_id)
        ).one()
        ends = original.received_at + 30 * DAY
        purged = purge.run(session, kg.node.policy(), now=ends, by="test")
    with kg.node.sessions() as session:
        correction = session.scalars(
            select(InboundMessage).where(InboundMessage.typ == "correction/1")
        ).one()
        assert (correction.body_json, correction.wire, correction.purged_at) == (None, b"", ends)
    # The run says so (it listed only the original).
    assert sorted((p.direction, p.message, p.typ) for p in purged) == sorted(
        [("received", message_id, "alert/1"), ("received", correction.envelope_id, "correction/1")]
    )
    entries = [e for e in purged_entries(kg) if e["direction"] == "received"]
    assert sorted((e["typ"], e["sender"]) for e in entries) == [
        ("alert/1", "KZ"),
        ("correction/1", "KZ"),
    ]
    listed = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["body"] for m in listed] == [None, None]


@pytest.mark.parametrize(("action", "outcome"), [("correct", "suspended"), ("withdraw", None)])
def test_a_purged_correction_still_open_is_held_by_a_suspension_of_the_type_it_corrects(
    exchanged, action, outcome
):
    """Its body purged while its delivery was open, a correction of an alert is still
    held by a suspension of alert/1 (the type it corrects is kept with the message;
    the dispatcher read it from the purged body and sent it); a withdrawal, which
    carries no data, is not."""
    from sqlalchemy import update as sql_update

    from gateway.models import Delivery as DeliveryRow
    from schemas.examples import example_correction

    fed, message_id = exchanged
    kz, kg = fed["KZ"], fed["KG"]
    _corrections_agreed(fed, '"correction/1" = 30\n')
    fix = example_correction(refers_to=message_id, action=action)
    if action == "withdraw":
        fix.pop("body"), fix.update(reason_code="duplicate")
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": fix}
    )
    assert answer.status_code == 202, answer.get_json()
    correction = answer.get_json()["id"]
    kg.server.stop()
    assert [o.state for o in Dispatcher(kz.node).run_once()] == ["retrying"]
    with kz.node.sessions() as session:
        created = session.get(OutboundMessage, correction).created_at
        done = purge.run(session, kz.node.policy(), now=created + 30 * DAY, by="test")
        assert (correction, "body") in [(item.message, item.part) for item in done]
        sovereignty.suspend(session, scope="type", value="alert/1", reason="dispute", who="admin")
        session.execute(
            sql_update(DeliveryRow)
            .where(DeliveryRow.message_id == correction)
            .values(next_attempt_at=0)
        )
        session.commit()
    kg.server.start()
    held = Dispatcher(kz.node).run_once()
    if outcome is None:
        assert [o.state for o in held] == ["delivered"]
    else:
        assert [(o.state, o.code) for o in held] == [("retrying", outcome)]


def test_a_correction_goes_with_its_original_on_both_nodes_and_is_shown_before(exchanged):
    """A correction sent long after its original carries the same data: it is due when
    the original is, on the sending node as on the receiving one; `--dry-run` lists it,
    the run returns it, and its `purged` entry names who purged."""
    from sqlalchemy import update as sql_update

    from schemas.examples import example_correction

    fed, message_id = exchanged
    kz, kg = fed["KZ"], fed["KG"]
    _corrections_agreed(fed)
    fix = example_correction(refers_to=message_id)
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": fix}
    )
    correction = answer.get_json()["id"]
    assert [o.state for o in Dispatcher(kz.node).run_once()] == ["delivered"]
    # The original was sent and received 40 days ago: its 30 days ended 10 days ago.
    with kz.node.sessions() as session:
        session.execute(
            sql_update(OutboundMessage)
            .where(OutboundMessage.id == message_id)
            .values(created_at=OutboundMessage.created_at - 40 * DAY)
        )
        session.commit()
        ends = session.get(OutboundMessage, message_id).created_at + 30 * DAY
    with kg.node.sessions() as session:
        session.execute(
            sql_update(InboundMessage)
            .where(InboundMessage.envelope_id == message_id)
            .values(received_at=InboundMessage.received_at - 40 * DAY)
        )
        session.commit()
    for member in (kz, kg):
        with member.node.sessions() as session:
            due = {
                item.message: item.retention_ends
                for item in purge.due(session, member.node.policy(), int(time.time()))
            }
        assert due[correction] == due[message_id] <= ends + 5, due
        shown = CliRunner().invoke(main, ["--instance", str(member.instance), "purge", "--dry-run"])
        assert "correction/1" in shown.output and "alert/1" in shown.output, shown.output
    for member in (kz, kg):
        with member.node.sessions() as session:
            done = purge.run(session, member.node.policy(), by="test")
            assert {item.message for item in done} == {message_id, correction}
    with kz.node.sessions() as session:
        assert session.get(OutboundMessage, correction).body_json is None
    assert {(e["id"], e["by"]) for e in purged_entries(kg)} == {
        (message_id, "test"),
        (correction, "test"),
    }
