"""Nodes exchanging real messages over HTTP on 127.0.0.1, on SQLite and PostgreSQL:
submission, dispatch, receipts, retries, replays, a peer that is down, and
dispatchers that race or die mid-send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import requests
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from gateway import onward
from gateway.db import WriterLock
from gateway.dispatcher import Dispatcher
from gateway.envelope import step1_parse_outer, step2_parse_header, verify_receipt
from gateway.models import Delivery, DeliveryState, InboundMessage, InboundRejection
from keys.nodekeys import NodeKeys
from schemas.examples import example_alert, example_alert_uzbek_latin
from tests.conftest import PASSPHRASE
from tests.test_group_commit import held_up_by_the_lock_file


def submit(member, to, body=None, *, key=None):
    headers = member.auth()
    if key:
        headers["Idempotency-Key"] = key
    answer = member.client().post(
        "/api/v1/messages",
        headers=headers,
        json={"typ": "alert/1", "body": body or example_alert(), "to": to},
    )
    assert answer.status_code in (200, 202), answer.get_json()
    return answer.get_json()


def test_a_submission_on_sqlite_queues_with_the_receiving_workers(make_federation, monkeypatch):
    """On SQLite the agency API's writes wait for the lock file the receiving workers
    take turns on (gateway/db.py WriterLock, taken by every session at its first
    write) rather than in SQLite's busy handler; a PostgreSQL node has no lock file."""
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    lock = WriterLock.for_engine(kz.node.engine)
    if kz.node.engine.dialect.name != "sqlite":
        assert lock is None
        submit(kz, ["KG"])
        return
    assert lock is not None

    def deliveries() -> int:
        with kz.node.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)

    answer = held_up_by_the_lock_file(lock.path, lambda: submit(kz, ["KG"]), deliveries)
    assert [d["state"] for d in answer["deliveries"]] == ["queued"]
    # The submission's own transaction too, not only the recording of identifiers
    # before it.
    monkeypatch.setattr(onward, "index_pending", lambda *args, **kwargs: 0)
    answer = held_up_by_the_lock_file(
        lock.path, lambda: submit(kz, ["KG"]), lambda: deliveries() > 1
    )
    assert [d["state"] for d in answer["deliveries"]] == ["queued"]
    assert deliveries() == 2


def test_the_dispatcher_queues_its_writes_with_the_receiving_workers(make_federation):
    """Its claim, like every write of the node's sessions, waits for the lock file
    rather than in SQLite's busy handler, and goes through once it is let go."""
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    submit(kz, ["KG"])
    lock = WriterLock.for_engine(kz.node.engine)
    if kz.node.engine.dialect.name != "sqlite":
        assert lock is None
        return
    assert lock is not None

    def sending() -> bool:
        return [d.state for d in deliveries(kz)] == [DeliveryState.SENDING]

    claimed = held_up_by_the_lock_file(
        lock.path, lambda: Dispatcher(kz.node).claim(int(time.time())), sending
    )
    assert len(claimed) == 1 and sending()


def inbox_count(member, sender=None, envelope_id=None):
    with member.node.sessions() as session:
        query = select(func.count()).select_from(InboundMessage)
        if sender:
            query = query.where(InboundMessage.sender == sender)
        if envelope_id:
            query = query.where(InboundMessage.envelope_id == envelope_id)
        return session.scalar(query)


def deliveries(member):
    with member.node.sessions() as session:
        return list(
            session.scalars(
                select(Delivery).options(selectinload(Delivery.envelope)).order_by(Delivery.id)
            )
        )


def test_alert_reaches_two_peers_with_verified_receipts(make_federation):
    fed = make_federation()
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    sent = submit(kz, ["KG", "UZ"])
    assert [d["state"] for d in sent["deliveries"]] == ["queued", "queued"]

    outcomes = Dispatcher(kz.node).run_once()
    assert sorted(o.state for o in outcomes) == ["delivered", "delivered"]

    view = kz.client().get(f"/api/v1/messages/{sent['id']}", headers=kz.auth()).get_json()
    trust = kz.node.trust().keys
    for delivery in view["deliveries"]:
        assert delivery["state"] == "delivered" and delivery["receipt_verified"]
        assert [e["state"] for e in delivery["events"]] == ["queued", "delivered"]
    with kz.node.sessions() as session:
        for row in session.scalars(select(Delivery)):
            envelope = step2_parse_header(*step1_parse_outer(row.envelope.wire, kz.node.limits))
            receipt = verify_receipt(
                row.receipt, trust=trust, now=int(time.time()), envelope=envelope
            )
            assert receipt.accepted and receipt.signer.node == row.recipient

    for member in (kg, uz):
        inbox = member.client().get("/api/v1/inbox", headers=member.auth()).get_json()
        assert len(inbox["messages"]) == 1
        entry = inbox["messages"][0]
        assert entry["sender"] == "KZ" and entry["envelope_id"] == sent["id"]
        assert entry["body"] == example_alert()

    # A message flows back.
    reply = submit(kg, ["KZ"], example_alert_uzbek_latin())
    Dispatcher(kg.node).run_once()
    inbox = kz.client().get("/api/v1/inbox", headers=kz.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in inbox] == [reply["id"]]


def test_retry_gets_stored_receipt_and_replay_is_refused(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    first = requests.post(kg.server.url + "/xb1/envelopes", data=wire, timeout=5)
    second = requests.post(kg.server.url + "/xb1/envelopes", data=wire, timeout=5)
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert inbox_count(kg, "KZ", sent["id"]) == 1

    # Same id, other content (a fresh seal reusing the id) is a replay, refused with a
    # signed receipt and recorded.
    from gateway.envelope import Recipient, seal

    key = kz.node.trust().keys.encryption_key("KG", int(time.time()))
    other = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KZ",
        signing_key=kz.keys.current_signing,
        recipients=[Recipient("KG", key.kid, key.pub)],
        tl=1,
        message_id=sent["id"],
    )
    answer = requests.post(kg.server.url + "/xb1/envelopes", data=other.to_wire(), timeout=5)
    assert answer.status_code == 409
    receipt = verify_receipt(
        answer.content, trust=kz.node.trust().keys, now=int(time.time()), envelope=other
    )
    assert receipt.status == "rejected" and receipt.reason == "replay"
    assert inbox_count(kg, "KZ", sent["id"]) == 1
    with kg.node.sessions() as session:
        codes = session.scalars(select(InboundRejection.code)).all()
    assert codes == ["replay"]


def test_peer_down_then_back_every_message_arrives_once(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    kg.server.stop()
    ids = [submit(kz, ["KG"])["id"] for _ in range(5)]
    dispatcher = Dispatcher(kz.node)
    outcomes = dispatcher.run_once()
    assert [o.state for o in outcomes] == ["retrying"] * 5
    assert {o.code for o in outcomes} == {"peer-unreachable"}
    states = kz.client().get("/api/v1/messages?state=retrying", headers=kz.auth()).get_json()
    assert len(states["messages"]) == 5

    kg.server.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(d.state != "delivered" for d in deliveries(kz)):
        dispatcher.run_once()
        time.sleep(0.05)
    assert all(d.state == "delivered" and d.receipt_verified for d in deliveries(kz))
    assert all(inbox_count(kg, "KZ", message_id) == 1 for message_id in ids)
    assert inbox_count(kg) == 5


def test_signed_rejection_is_final_visible_and_retryable(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    # KG lost the encryption key the trust list announces: it can authenticate KZ but
    # is not a recipient under any key it holds.
    kg.node.keys = NodeKeys.deterministic("KG", b"another-seed")
    kg.node.keys = NodeKeys("KG", fed["KG"].keys.signing, kg.node.keys.encryption)
    submit(kz, ["KG"])
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "rejected" and outcome.code == "not-a-recipient"
    [delivery] = deliveries(kz)
    assert delivery.receipt_verified and delivery.last_code == "not-a-recipient"
    assert inbox_count(kg) == 0

    kg.node.keys = fed["KG"].keys  # the operator restores the key
    answer = kz.client().post(f"/api/v1/deliveries/{delivery.id}/retry", headers=kz.auth())
    assert answer.status_code == 200 and answer.get_json()["state"] == "queued"
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
    assert inbox_count(kg) == 1
    events = [
        e["state"]
        for e in kz.client()
        .get(f"/api/v1/messages/{delivery.message_id}", headers=kz.auth())
        .get_json()["deliveries"][0]["events"]
    ]
    assert events == ["queued", "rejected", "queued", "delivered"]


def test_envelope_expires_while_peer_is_down(make_federation):
    fed = make_federation(("KZ", "KG"), settings={"message_ttl": 60})
    kz, kg = fed["KZ"], fed["KG"]
    kg.server.stop()
    submit(kz, ["KG"])
    dispatcher = Dispatcher(kz.node)
    assert [o.state for o in dispatcher.run_once()] == ["retrying"]
    later = int(time.time()) + 3600
    [outcome] = dispatcher.run_once(now=later)
    assert outcome.state == "expired"
    assert deliveries(kz)[0].state == "expired"


def test_concurrent_dispatcher_processes_never_send_one_message_twice(make_federation):
    # Timeouts no loaded machine meets: a timed-out attempt would be sent again.
    fed = make_federation(("KZ", "KG"), settings={"peer_timeout": 10.0, "dispatch_lease": 40})
    kz, kg = fed["KZ"], fed["KG"]
    ids = [submit(kz, ["KG"])["id"] for _ in range(30)]
    env = dict(os.environ, GATEWAY_KEY_PASSPHRASE=PASSPHRASE)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "--instance",
                str(kz.instance),
                "dispatch",
                "--until-idle",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
    assert all(d.state == "delivered" for d in deliveries(kz))
    posted = [
        step2_parse_header(*step1_parse_outer(body, kz.node.limits)).header.id for body in kg.posts
    ]
    assert sorted(posted) == sorted(ids)  # each envelope POSTed exactly once
    assert inbox_count(kg) == 30


def test_dispatcher_killed_mid_send_and_restarted(make_federation):
    # A peer timeout the kill comes well within, even on a loaded machine (the worker
    # would otherwise record a retry first), and a lease longer than an attempt.
    fed = make_federation(("KZ", "KG"), settings={"dispatch_lease": 30, "peer_timeout": 10.0})
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])["id"]

    # KG stores the message, then its answer is held up on the way back.
    stored, release = threading.Event(), threading.Event()
    inner = kg.server.switch.app

    def slow_answer(environ, start_response):
        result = inner(environ, start_response)
        if environ.get("PATH_INFO") == "/xb1/envelopes":
            stored.set()
            release.wait(10)
        return result

    kg.server.switch.app = slow_answer
    env = dict(os.environ, GATEWAY_KEY_PASSPHRASE=PASSPHRASE)
    worker = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--instance", str(kz.instance), "dispatch"],
        env=env,
        start_new_session=True,
    )
    try:
        assert stored.wait(60), "the dispatcher never reached KG"
        os.killpg(worker.pid, signal.SIGKILL)  # dies before it can record the receipt
        worker.wait(10)
        assert inbox_count(kg, "KZ", message_id) == 1
    finally:
        release.set()
        if worker.poll() is None:
            worker.kill()
    [delivery] = deliveries(kz)
    assert delivery.state == "sending" and delivery.receipt is None

    kg.server.switch.app = inner
    restarted = Dispatcher(kz.node, worker="restarted")
    assert restarted.run_once() == []  # the dead worker's lease still holds
    [outcome] = restarted.run_once(now=int(time.time()) + 31)
    assert outcome.state == "delivered"
    assert inbox_count(kg, "KZ", message_id) == 1  # the resend was answered as a retry
    assert len(kg.posts) == 2 and kg.posts[0] == kg.posts[1]  # byte-identical envelope
    [delivery] = deliveries(kz)
    assert delivery.attempts == 2 and delivery.receipt_verified


def test_unknown_or_revoked_token_and_agency_isolation(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    client = kz.client()
    assert client.get("/api/v1/inbox").status_code == 401
    answer = client.get("/api/v1/inbox", headers={"Authorization": "Bearer gwt_nope"})
    assert answer.status_code == 401 and answer.get_json()["error"] == "bad-token"

    sent = submit(kz, ["KG"], key="case-42")
    again = submit(kz, ["KG"], key="case-42")
    assert again["id"] == sent["id"] and len(deliveries(kz)) == 1

    from gateway.tokens import issue, revoke

    with kz.node.sessions() as session:
        other = issue(session, "kz-ngo")
        session.commit()
    foreign = {"Authorization": f"Bearer {other.secret}"}
    assert client.get(f"/api/v1/messages/{sent['id']}", headers=foreign).status_code == 404
    assert client.get("/api/v1/messages", headers=foreign).get_json()["messages"] == []
    with kz.node.sessions() as session:
        revoke(session, other.id)
        session.commit()
    assert client.get("/api/v1/messages", headers=foreign).status_code == 401


def test_submission_errors_are_clear_and_lose_nothing(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    client = kz.client()

    def post(payload, **kwargs):
        answer = client.post(
            "/api/v1/messages",
            headers=kz.auth(),
            **kwargs,
            **({"json": payload} if payload is not None else {}),
        )
        return answer.status_code, answer.get_json()

    status, body = post(None, data=b"not json", content_type="application/json")
    assert (status, body["error"]) == (400, "bad-json")
    status, body = post({"typ": "alert/1", "body": {}, "to": ["KG"]})
    assert (status, body["error"]) == (422, "schema-invalid")
    assert "kind" in body["details"]
    bad = example_alert()
    bad["subjects"][0]["names"][0]["latin"] = "Айгерим"
    status, body = post({"typ": "alert/1", "body": bad, "to": ["KG"]})
    assert status == 422 and "subjects" in body["details"]
    status, body = post({"typ": "nonsense/1", "body": example_alert(), "to": ["KG"]})
    assert (status, body["error"]) == (422, "unsupported-type")
    status, body = post({"typ": "alert/1", "body": example_alert(), "to": ["TM"]})
    assert (status, body["error"]) == (422, "unknown-recipient")
    status, body = post({"typ": "alert/1", "body": example_alert(), "to": ["KZ"]})
    assert (status, body["error"]) == (422, "bad-recipients")
    status, body = post({"typ": "alert/1", "body": example_alert(), "to": []})
    assert (status, body["error"]) == (422, "bad-recipients")
    status, body = post({"typ": "alert/1", "body": example_alert(), "to": ["KG"], "x": 1})
    assert (status, body["error"]) == (422, "bad-field")
    assert deliveries(kz) == []
    json.dumps(body)  # every error answer is plain JSON


def test_peer_api_refusals_are_recorded_with_codes(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kg = fed["KG"]
    client = kg.client()
    answer = client.post("/xb1/envelopes", data=b"{not json")
    assert answer.status_code == 400 and answer.get_json()["error"] == "malformed"
    answer = client.post("/xb1/envelopes", data=b"x" * (kg.node.limits.max_bytes + 10))
    assert answer.status_code == 413 and answer.get_json()["error"] == "too-large"
    assert client.get("/xb1/trust-list").data == fed.trust_wire
    with kg.node.sessions() as session:
        rows = session.scalars(select(InboundRejection).order_by(InboundRejection.id)).all()
    assert [r.code for r in rows] == ["malformed", "too-large"]
    assert rows[0].wire == b"{not json" and rows[1].size > 0


def test_expired_trust_list_freezes_sending_with_an_alarm(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    ready = kz.client().get("/readyz")
    assert ready.status_code == 200
    trust_list = kz.node.trust()
    from gateway.errors import NodeStateError

    try:
        kz.node.require_sending_allowed(trust_list.expires + 1)
    except NodeStateError as e:
        assert e.code == "trust-list-expired"
    else:
        raise AssertionError("an expired trust list must freeze sending")
    assert DeliveryState.FINAL == ("delivered", "rejected", "expired")


def test_the_same_envelope_posted_concurrently_is_stored_once(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = submit(kz, ["KG"])
    wire = deliveries(kz)[0].envelope.wire
    barrier = threading.Barrier(8)
    answers = []

    def post():
        barrier.wait()
        answers.append(requests.post(kg.server.url + "/xb1/envelopes", data=wire, timeout=20))

    threads = [threading.Thread(target=post) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.content for a in answers}) == 1  # one receipt, the stored one
    assert inbox_count(kg, "KZ", sent["id"]) == 1


def test_an_envelope_sent_in_chunks_is_accepted_like_one_with_a_length(make_federation):
    """Without a Content-Length (chunked transfer coding) the body is read to its end
    through the request's stream; with one, straight from the server's input."""
    import http.client

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    submit(kz, ["KG"])
    chunked, plain = (d.envelope.wire for d in deliveries(kz))
    answers = []
    for wire, chunks in ((chunked, True), (plain, False)):
        connection = http.client.HTTPConnection("127.0.0.1", kg.server.port, timeout=10)
        body = iter([wire[:100], wire[100:]]) if chunks else wire
        connection.request(
            "POST",
            "/xb1/envelopes",
            body=body,
            headers={"Content-Type": "application/xb1+json"},
            encode_chunked=chunks,
        )
        answer = connection.getresponse()
        answers.append((answer.status, answer.read()[:12]))
        connection.close()
    assert answers == [(200, b'{"protected"'), (200, b'{"protected"')]
    assert inbox_count(kg, "KZ") == 2
