"""What a peer's answer, a second dispatcher or an operator can do to a delivery in
flight: every broken answer becomes a visible retry (never a dispatcher that dies
with the row left "sending"), a dispatcher whose lease ran out does not send, a
message past its expiry is not sealed again, and a withdrawal or a manual retry
does not overwrite what a dispatcher is doing."""

from __future__ import annotations

import errno
import gc
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

import gateway.db
from gateway import dispatcher as dispatcher_module
from gateway import outbox
from gateway.dispatcher import ClockSkew, Dispatcher
from gateway.errors import ApiError
from gateway.models import (
    Delivery,
    DeliveryEvent,
    DeliveryState,
    OutboundMessage,
    SealedEnvelope,
)
from schemas.examples import example_correction
from tests.conftest import postgres_only, sqlite_only
from tests.test_exchange import inbox_count, submit
from tests.test_rotation import revoke_encryption_key
from tests.test_sovereignty import gateway as gateway_cli


def _row(member, delivery_id: int) -> Delivery:
    with member.node.sessions() as session:
        row = session.get(Delivery, delivery_id)
        assert row is not None
        session.expunge(row)
        return row


def _answering(member, answer):
    """Make ``member``'s peer API answer every envelope with ``answer(start_response)``
    (its other routes are left as they are)."""
    inner = member.server.switch.app

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/xb1/envelopes":
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            return answer(start_response)
        return inner(environ, start_response)

    member.server.switch.app = app


def _short_body(start_response):
    start_response("400 Bad Request", [("Content-Length", "100")])
    return [b'{"err']  # then the connection ends, 95 bytes short


def _bad_gzip(start_response):
    start_response("400 Bad Request", [("Content-Encoding", "gzip"), ("Content-Length", "10")])
    return [b"0123456789"]


def _stall(start_response):
    start_response("200 OK", [("Content-Length", "100")])

    def body():
        yield b'{"pro'
        time.sleep(2.5)  # longer than the peer timeout of these tests (1 s)
        yield b"x" * 95

    return body()


def _trickle(start_response):
    start_response("200 OK", [("Content-Length", "40")])

    def body():
        # The first byte at once, so the status line and headers (sent with it) arrive
        # well within the peer timeout even on a loaded machine; then each further byte
        # well within it too, the whole far beyond.
        yield b"x"
        for _ in range(39):
            time.sleep(0.2)
            yield b"x"

    return body()


def _nested(start_response):
    start_response("400 Bad Request", [("Content-Type", "application/json")])
    return [b"[" * 60_000]  # within the answer limit, deeper than Python parses


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (_short_body, "answer-unreadable"),
        (_bad_gzip, "answer-unreadable"),
        (_stall, "answer-unreadable"),
        (_trickle, "answer-unreadable"),
        (_nested, "peer-refused"),
    ],
    ids=["short-body", "bad-gzip", "stalled-body", "trickled-body", "nested-json"],
)
def test_a_broken_answer_is_a_visible_retry_and_the_dispatcher_goes_on(
    make_federation, answer, code
):
    # A peer timeout that a loaded machine's test server meets with its status line
    # (a late one would make the attempt peer-unreachable), short enough to keep the
    # stalled and trickled answers' cases quick (1 s and 2 s per delivery).
    fed = make_federation(("KZ", "KG"), settings={"peer_timeout": 1.0})
    kz, kg = fed["KZ"], fed["KG"]
    sent = [submit(kz, ["KG"]) for _ in range(2)]
    _answering(kg, answer)
    outcomes = Dispatcher(kz.node).run_once()
    assert [(o.state, o.code) for o in outcomes] == [("retrying", code)] * 2, outcomes
    for message in sent:
        row = _row(kz, message["deliveries"][0]["id"])
        assert (row.state, row.last_code, row.lease_owner) == ("retrying", code, None)
        assert row.last_detail


def test_an_error_of_our_own_while_sending_is_a_visible_retry(make_federation, monkeypatch):
    """A defect of this node's own (here: in judging the answer) is recorded with its
    type and message, and the next delivery still goes out."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz = fed["KZ"]
    first, second = submit(kz, ["KG"]), submit(kz, ["UZ"])
    judge = Dispatcher._judge_answer
    calls: list[int] = []

    def failing_once(self, trust_list, delivery, *args, **kwargs):
        calls.append(delivery.id)
        if len(calls) == 1:
            raise KeyError("a defect")
        return judge(self, trust_list, delivery, *args, **kwargs)

    monkeypatch.setattr(Dispatcher, "_judge_answer", failing_once)
    outcomes = Dispatcher(kz.node).run_once()
    assert [(o.state, o.code) for o in outcomes] == [
        ("retrying", "internal-error"),
        ("delivered", None),
    ]
    row = _row(kz, first["deliveries"][0]["id"])
    assert (row.state, row.last_code) == ("retrying", "internal-error")
    assert "KeyError" in (row.last_detail or "")
    assert _row(kz, second["deliveries"][0]["id"]).state == "delivered"


# --------------------------------------------------------------------------- leases


def test_a_dispatcher_whose_lease_ran_out_before_sending_does_not_send(make_federation):
    """A batch is claimed at once and sent one delivery after another; behind slow
    peers a later delivery's lease can run out before its turn, and another dispatcher
    may claim it. The first one then leaves it alone: one sender at a time."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message = submit(kz, ["KG"])
    delivery_id = message["deliveries"][0]["id"]
    first, second = Dispatcher(kz.node, worker="first"), Dispatcher(kz.node, worker="second")
    now = int(time.time())
    assert first.claim(now) == [delivery_id]
    assert second.claim(now + kz.node.settings.dispatch_lease + 1) == [delivery_id]

    late = first.deliver(delivery_id)
    assert (late.state, late.code) == ("sending", "lease-lost")
    assert kg.posts == []
    assert _row(kz, delivery_id).lease_owner == "second"

    assert second.deliver(delivery_id).state == "delivered"
    assert len(kg.posts) == 1 and inbox_count(kg, "KZ", message["id"]) == 1


def test_the_lease_is_renewed_when_the_send_begins(make_federation):
    """The lease a delivery is sent under runs from the moment it is sent, not from
    the moment its batch was claimed."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    dispatcher = Dispatcher(kz.node)
    claimed_at = int(time.time())
    assert dispatcher.claim(claimed_at) == [delivery_id]
    lease = kz.node.settings.dispatch_lease
    seen: list[int | None] = []
    inner = kg.server.switch.app

    def watching(environ, start_response):
        seen.append(_row(kz, delivery_id).lease_until)
        return inner(environ, start_response)

    kg.server.switch.app = watching
    sent_at = claimed_at + lease - 1  # its turn comes when the claim's lease is nearly over
    assert dispatcher.deliver(delivery_id, now=sent_at).state == "delivered"
    assert seen == [sent_at + lease]


# --------------------------------------------------------------------------- expiry and re-sealing


def _envelopes(member) -> list[SealedEnvelope]:
    with member.node.sessions() as session:
        rows = list(session.scalars(select(SealedEnvelope)))
        session.expunge_all()
        return rows


def test_an_expired_message_is_not_sealed_again(make_federation):
    """A key changed under an envelope whose expiry has passed: the delivery expires;
    no new envelope, which would carry the message past its expiry, is sealed."""
    fed = make_federation(("KZ", "KG"), settings={"message_ttl": 60})
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    [envelope] = _envelopes(kz)
    revoke_encryption_key(fed, "KG", int(time.time()))
    [outcome] = Dispatcher(kz.node).run_once(now=envelope.exp + 1)
    assert (outcome.state, outcome.code) == ("expired", "expired")
    assert len(_envelopes(kz)) == 1
    assert kg.posts == [] and inbox_count(kg) == 0


def test_an_envelope_sealed_again_keeps_the_messages_expiry(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    [original] = _envelopes(kz)
    revoke_encryption_key(fed, "KG", int(time.time()))
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered" and inbox_count(kg) == 1
    [resealed] = [e for e in _envelopes(kz) if e.id != original.id]
    assert resealed.exp == original.exp


def test_an_envelope_sealed_again_later_still_expires_with_the_message(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    submit(kz, ["KG"])
    [original] = _envelopes(kz)
    revoke_encryption_key(fed, "KG", int(time.time()))
    later = original.iat + 600
    Dispatcher(kz.node).run_once(now=later)  # KG refuses it as not yet valid: no matter
    [resealed] = [e for e in _envelopes(kz) if e.id != original.id]
    assert (resealed.iat, resealed.exp) == (later, original.exp)


def test_an_envelope_sealed_again_in_the_last_second_keeps_the_messages_expiry(
    make_federation,
):
    fed = make_federation(("KZ", "KG"), settings={"message_ttl": 60})
    kz = fed["KZ"]
    submit(kz, ["KG"])
    [original] = _envelopes(kz)
    revoke_encryption_key(fed, "KG", int(time.time()))
    Dispatcher(kz.node).run_once(now=original.exp - 1)
    [resealed] = [e for e in _envelopes(kz) if e.id != original.id]
    assert (resealed.iat, resealed.exp) == (original.exp - 1, original.exp)


def test_no_envelope_is_sealed_again_at_the_expiry_second(make_federation):
    """At ``exp`` itself the message has not expired (that is after it), but a new
    envelope keeping its expiry would need ``iat < exp``: none is sealed (one with a
    later ``exp`` would outlive the message), and the delivery expires."""
    fed = make_federation(("KZ", "KG"), settings={"message_ttl": 60})
    kz, kg = fed["KZ"], fed["KG"]
    message = submit(kz, ["KG"])
    [original] = _envelopes(kz)
    revoke_encryption_key(fed, "KG", int(time.time()))
    [outcome] = Dispatcher(kz.node).run_once(now=original.exp)
    assert (outcome.state, outcome.code) == ("expired", "expired"), outcome
    assert "no time left" in (outcome.detail or "")
    assert [e.id for e in _envelopes(kz)] == [original.id]
    assert kg.posts == [] and inbox_count(kg) == 0
    row = _row(kz, message["deliveries"][0]["id"])
    assert (row.state, row.last_code) == ("expired", "expired")
    assert "resealed" not in _events(kz)


def _losing_the_answer(member, *, stored: bool):
    """Make ``member``'s peer API answer 502, as a proxy that lost the answer would:
    after storing the envelope (``stored``), or without it ever arriving."""
    inner = member.server.switch.app

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/xb1/envelopes":
            if stored:
                list(inner(environ, lambda *args, **kwargs: None))
            else:
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
            return [b"the answer was lost"]
        return inner(environ, start_response)

    member.server.switch.app = app
    return inner


def _events(member) -> list[str | None]:
    with member.node.sessions() as session:
        return list(session.scalars(select(DeliveryEvent.code).order_by(DeliveryEvent.id)))


def test_a_replaced_key_after_a_lost_answer_sends_the_same_bytes_first(make_federation):
    """The recipient stored the envelope but its answer was lost; then its encryption
    key was replaced. Sealing anew would give the message a new id, and the recipient
    would hold it twice: the same bytes go again and get the stored receipt."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    inner = _losing_the_answer(kg, stored=True)
    [lost] = Dispatcher(kz.node).run_once()
    assert (lost.state, lost.code, inbox_count(kg)) == ("retrying", "peer-error", 1)
    kg.server.switch.app = inner
    revoke_encryption_key(fed, "KG", int(time.time()), drop=True)
    [again] = Dispatcher(kz.node).run_once(now=int(time.time()) + 5)
    assert again.state == "delivered"
    assert inbox_count(kg) == 1 and len(_envelopes(kz)) == 1
    assert "resealed" not in _events(kz)


def test_the_same_bytes_refused_unopened_are_sealed_anew_at_the_next_attempt(make_federation):
    """The lost answer was lost before the envelope arrived, and the recipient no
    longer holds the old private key: its signed refusal says it stored nothing, and
    the next attempt seals anew. The message arrives once."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    inner = _losing_the_answer(kg, stored=False)
    [lost] = Dispatcher(kz.node).run_once()
    assert (lost.state, inbox_count(kg)) == ("retrying", 0)
    kg.server.switch.app = inner
    revoke_encryption_key(fed, "KG", int(time.time()), drop=True)
    kg.node.keys = replace(  # the old private key is gone
        kg.node.keys, encryption=tuple(k for k in kg.node.keys.encryption if k.status == "active")
    )
    now = int(time.time())
    [refused] = Dispatcher(kz.node).run_once(now=now + 5)
    assert (refused.state, refused.code) == ("retrying", "reseal-needed")
    [resealed] = Dispatcher(kz.node).run_once(now=now + 10)
    assert resealed.state == "delivered" and inbox_count(kg) == 1
    assert _events(kz).count("resealed") == 1


def test_bytes_sealed_to_a_revoked_key_are_not_sent_again(make_federation):
    """A revoked key may be in someone else's hands: after a lost answer, the message
    is sealed anew at once, even though the recipient may then hold it twice
    (decision 0007)."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    [old] = _envelopes(kz)
    inner = _losing_the_answer(kg, stored=True)
    Dispatcher(kz.node).run_once()
    kg.server.switch.app = inner
    revoke_encryption_key(fed, "KG", int(time.time()))
    [outcome] = Dispatcher(kz.node).run_once(now=int(time.time()) + 5)
    assert outcome.state == "delivered"
    assert kg.posts.count(old.wire) == 1 and "resealed" in _events(kz)


class _Stopped(BaseException):
    """The dispatcher's process ends here (killed, a power cut)."""


def test_an_attempt_cut_short_then_a_replaced_key_sends_the_same_bytes_first(
    make_federation, monkeypatch
):
    """A dispatcher sends the envelope, the recipient stores it, and the dispatcher
    stops before recording anything; then the recipient's key is replaced. The
    dispatcher that takes the delivery over must not seal anew (a new id: the message
    twice in the recipient's inbox) but send the same bytes, which get the stored
    receipt."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    first = Dispatcher(kz.node, worker="first")

    def stop(*args, **kwargs):
        raise _Stopped

    monkeypatch.setattr(first, "_record", stop)
    now = int(time.time())
    with pytest.raises(_Stopped):
        first.run_once(now=now)
    assert inbox_count(kg) == 1
    revoke_encryption_key(fed, "KG", now, drop=True)
    later = now + kz.node.settings.dispatch_lease + 5
    [outcome] = Dispatcher(kz.node, worker="second").run_once(now=later)
    assert outcome.state == "delivered"
    assert inbox_count(kg) == 1 and len(_envelopes(kz)) == 1
    assert _events(kz) == [None, "attempt-interrupted", None]


def test_only_the_dispatcher_holding_a_delivery_records_its_interruption(make_federation):
    """A took over a delivery left unrecorded, and lost it to B before sending (its
    lease ran out first): B records the interruption and delivers; A records nothing.
    A takeover that a round cut short before sending is not recorded later either."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    submit(kz, ["KG"])
    lease = kz.node.settings.dispatch_lease
    now = int(time.time())
    [delivery_id] = Dispatcher(kz.node, worker="stopped").claim(now)
    a = Dispatcher(kz.node, worker="A")
    assert a.claim(now + lease + 1) == [delivery_id]
    [outcome] = Dispatcher(kz.node, worker="B").run_once(now=now + 2 * lease + 2)
    assert outcome.state == "delivered"
    assert a.deliver(delivery_id, now=now + 2 * lease + 3).code == "lease-lost"
    with kz.node.sessions() as session:
        events = session.execute(
            select(DeliveryEvent.code, DeliveryEvent.worker).order_by(DeliveryEvent.id)
        ).all()
    assert [tuple(e) for e in events] == [(None, None), ("attempt-interrupted", "B"), (None, "B")]


def test_a_takeover_whose_round_was_cut_short_is_not_recorded_later(make_federation):
    """A took a delivery over, and its round ended before sending it; B took it over in
    turn and its attempt failed. When A claims it again as an ordinary retry, A records
    no interruption: the one it took over then is B's to record, and B did."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    kg.server.stop()
    submit(kz, ["KG"])
    lease = kz.node.settings.dispatch_lease
    now = int(time.time())
    [delivery_id] = Dispatcher(kz.node, worker="stopped").claim(now)
    a = Dispatcher(kz.node, worker="A")
    assert a.claim(now + lease + 1) == [delivery_id]  # and A's round ends here
    [failed] = Dispatcher(kz.node, worker="B").run_once(now=now + 2 * lease + 2)
    assert failed.state == "retrying"
    [again] = a.run_once(now=now + 4 * lease)
    assert again.state == "retrying"
    with kz.node.sessions() as session:
        interrupted = session.scalars(
            select(DeliveryEvent.worker).where(DeliveryEvent.code == "attempt-interrupted")
        ).all()
    assert interrupted == ["B"]


def test_an_unsigned_answer_cannot_pass_for_the_proof_that_nothing_was_stored(
    make_federation,
):
    """``reseal-needed`` is recorded only for a signed refusal that proves the
    recipient stored nothing. Anyone on the path can answer ``{"error":
    "reseal-needed"}`` unsigned: that must not make the next attempt seal anew."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    inner = _losing_the_answer(kg, stored=True)
    Dispatcher(kz.node).run_once()
    assert inbox_count(kg) == 1
    revoke_encryption_key(fed, "KG", int(time.time()), drop=True)

    def forged(start_response):
        start_response("400 Bad Request", [("Content-Type", "application/json")])
        return [b'{"error": "reseal-needed", "message": "unsigned"}']

    _answering(kg, forged)
    now = int(time.time())
    [refused] = Dispatcher(kz.node).run_once(now=now + 5)
    assert (refused.state, refused.code) == ("retrying", "peer-refused")
    assert "reseal-needed" in (refused.detail or "")
    kg.server.switch.app = inner
    [outcome] = Dispatcher(kz.node).run_once(now=now + 10)
    assert outcome.state == "delivered"
    assert inbox_count(kg) == 1 and len(_envelopes(kz)) == 1


def test_a_peers_unsigned_rejection_code_is_shown(make_federation):
    """An unsigned refusal with a code of PROTOCOL §3 keeps that code (what §7 has a
    peer answer before it authenticated the sender)."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])

    def unknown(start_response):
        start_response("401 Unauthorized", [("Content-Type", "application/json")])
        return [b'{"error": "unknown-sender", "message": "who are you?"}']

    _answering(kg, unknown)
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("retrying", "unknown-sender")


def test_control_characters_in_a_peers_answer_are_stored_escaped(make_federation):
    """Anyone on the path can answer unsigned. A NUL in that answer (which PostgreSQL's
    text refuses) or a terminal escape is recorded escaped, on both databases: the
    delivery is a visible retry and the dispatcher goes on to the next one."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = [submit(kz, ["KG"]) for _ in range(2)]

    def hostile(start_response):
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"refused\x00 \x1b[2J\xed\xa0\x80 end"]

    _answering(kg, hostile)
    outcomes = Dispatcher(kz.node).run_once()
    assert [(o.state, o.code) for o in outcomes] == [("retrying", "peer-refused")] * 2
    for message in sent:
        row = _row(kz, message["deliveries"][0]["id"])
        assert row.state == "retrying" and row.lease_owner is None
        assert "refused\\x00 \\x1b[2J" in row.last_detail and row.last_detail.isprintable()
        with kz.node.sessions() as session:
            details = session.scalars(
                select(DeliveryEvent.detail).where(DeliveryEvent.delivery_id == row.id)
            ).all()
        assert details[-1] == row.last_detail


@postgres_only
def test_an_outcome_the_database_refuses_leaves_a_visible_retry(make_federation, monkeypatch):
    """Should an outcome's text still be refused by the database (here: escaping
    switched off, a NUL for PostgreSQL), the delivery does not stay "sending" and the
    dispatcher does not stop: a plain ``internal-error`` is recorded instead, and the
    next attempt delivers."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    sent = [submit(kz, ["KG"]) for _ in range(2)]
    inner = kg.server.switch.app

    def nul(start_response):
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b"refused\x00"]

    _answering(kg, nul)
    monkeypatch.setattr(dispatcher_module, "printable", lambda text: text)
    monkeypatch.setattr(outbox, "printable", lambda text: text)
    outcomes = Dispatcher(kz.node).run_once()
    assert [(o.state, o.code) for o in outcomes] == [("retrying", "internal-error")] * 2
    for message in sent:
        row = _row(kz, message["deliveries"][0]["id"])
        assert (row.state, row.last_code, row.lease_owner) == (
            "retrying",
            "internal-error",
            None,
        )
        assert "peer-refused could not be recorded (DataError)" in row.last_detail
    kg.server.switch.app = inner
    later = int(time.time()) + 3600
    assert [o.state for o in Dispatcher(kz.node).run_once(now=later)] == ["delivered"] * 2
    assert inbox_count(kg) == 2


def test_a_long_host_name_still_fits_the_worker_column(make_federation, monkeypatch):
    """The worker id (host:pid:instance) is kept in 80-character columns, which
    PostgreSQL enforces: a long host name is shortened, not a dispatcher that stops."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    monkeypatch.setattr(dispatcher_module.socket, "gethostname", lambda: "n" * 253)
    dispatcher = Dispatcher(kz.node)
    assert len(dispatcher.worker) == 80 and dispatcher.worker.startswith("n" * 40)
    [outcome] = dispatcher.run_once()
    assert outcome.state == "delivered" and inbox_count(kg) == 1
    with pytest.raises(ValueError, match="at most 80"):
        Dispatcher(kz.node, worker="w" * 81)


# --------------------------------------------------------------------------- operators


def _withdraw(member, message_id: str) -> None:
    withdrawal = example_correction(
        refers_to=message_id, action="withdraw", reason_code="duplicate"
    )
    withdrawal.pop("body")
    answer = member.client().post(
        "/api/v1/messages",
        headers=member.auth(),
        json={"typ": "correction/1", "body": withdrawal},
    )
    assert answer.status_code == 202, answer.get_json()


def test_a_withdrawal_during_a_failed_send_stops_the_delivery_after_it(make_federation):
    """The message is withdrawn while its delivery is being sent, and that attempt
    fails: the delivery ends as withdrawn (it is not sent again), and the withdrawal
    itself did not overwrite the dispatcher's row while it was sending."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message = submit(kz, ["KG"])
    delivery_id = message["deliveries"][0]["id"]
    states_during_send: list[str] = []

    def withdrawn_meanwhile(start_response):
        _withdraw(kz, message["id"])
        states_during_send.append(_row(kz, delivery_id).state)
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"busy"]

    _answering(kg, withdrawn_meanwhile)
    outcomes = Dispatcher(kz.node).run_once()
    assert states_during_send == ["sending"]
    mine = [o for o in outcomes if o.code == "withdrawn"]
    assert len(mine) == 1 and mine[0].state == "expired"
    row = _row(kz, delivery_id)
    assert (row.state, row.last_code) == ("expired", "withdrawn")
    # A 503 may come from a proxy after the recipient stored it: not "never delivered".
    assert "may have arrived" in row.last_detail and "before it was" not in row.last_detail
    later = Dispatcher(kz.node).run_once(now=int(time.time()) + 60)
    assert all(o.code != "withdrawn" for o in later)  # nothing more for that delivery
    with kz.node.sessions() as session:
        codes = list(
            session.scalars(
                select(DeliveryEvent.code)
                .where(DeliveryEvent.delivery_id == delivery_id)
                .order_by(DeliveryEvent.id)
            )
        )
    assert codes.count("withdrawn") == 1


def test_a_withdrawal_says_when_an_attempt_may_have_arrived(make_federation):
    """A delivery ended by a withdrawal says "before it was delivered" only when no
    attempt may have reached the recipient: not after an answer lost once the recipient
    stored it, nor after a dispatcher stopped mid-send (its attempt unrecorded)."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    messages = {name: submit(kz, ["KG"]) for name in ("never", "lost", "interrupted")}
    ids = {name: m["deliveries"][0]["id"] for name, m in messages.items()}
    now = int(time.time())

    def due(**when: int) -> None:
        with kz.node.sessions() as session:
            for name, at in when.items():
                session.get(Delivery, ids[name]).next_attempt_at = at
            session.commit()

    due(never=2**40, interrupted=2**40)
    inner = _losing_the_answer(kg, stored=True)
    assert [o.code for o in Dispatcher(kz.node).run_once(now=now)] == ["peer-error"]
    assert inbox_count(kg) == 1
    kg.server.switch.app = inner
    due(lost=2**40, interrupted=now)
    # A dispatcher claims "interrupted" and stops before recording its attempt.
    assert Dispatcher(kz.node, worker="stopped").claim(now + 1) == [ids["interrupted"]]
    for message in messages.values():
        _withdraw(kz, message["id"])
    lease = kz.node.settings.dispatch_lease
    outcomes = Dispatcher(kz.node).run_once(now=now + lease + 2)
    # The withdrawals themselves go to KG, and the delivery taken over ends withdrawn.
    assert sorted((o.state, o.code) for o in outcomes) == [("delivered", None)] * 3 + [
        ("expired", "withdrawn")
    ]
    rows = {name: _row(kz, i) for name, i in ids.items()}
    assert {name: (r.state, r.last_code) for name, r in rows.items()} == dict.fromkeys(
        ids, ("expired", "withdrawn")
    )
    assert "before it was delivered" in rows["never"].last_detail
    for name in ("lost", "interrupted"):
        assert "may have arrived" in rows[name].last_detail, rows[name].last_detail
        assert "before it was delivered" not in rows[name].last_detail


def test_a_withdrawal_does_not_overwrite_a_delivery_a_dispatcher_has_claimed(make_federation):
    """The withdrawal reads the message's deliveries as waiting, but a dispatcher
    claims one meanwhile: that one is left to the dispatcher (which records it as
    withdrawn if its attempt does not deliver it)."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    message = submit(kz, ["KG"])
    delivery_id = message["deliveries"][0]["id"]
    with kz.node.sessions() as operator:
        original = operator.get(OutboundMessage, message["id"])
        assert original is not None
        assert [d.state for d in original.deliveries] == ["queued"]  # read ...
        assert Dispatcher(kz.node, worker="busy").claim(int(time.time())) == [delivery_id]
        outbox._stop_deliveries(operator, original, "a-withdrawal", int(time.time()))
        operator.commit()  # ... then withdrawn, once claimed
    row = _row(kz, delivery_id)
    assert (row.state, row.lease_owner) == ("sending", "busy")


def test_a_manual_retry_does_not_requeue_a_delivery_a_dispatcher_has_claimed(make_federation):
    """An operator asks for a retry of a delivery read as retrying, but a dispatcher
    claimed it meanwhile: the retry is refused, and the dispatcher's claim stands."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    with kz.node.sessions() as session:
        session.get(Delivery, delivery_id).state = DeliveryState.RETRYING
        session.commit()
    with kz.node.sessions() as operator:
        read = operator.get(Delivery, delivery_id)  # read (and kept: the session's copy) ...
        assert read is not None and read.state == "retrying"
        assert Dispatcher(kz.node, worker="busy").claim(int(time.time())) == [delivery_id]
        with pytest.raises(ApiError) as refused:  # ... then asked for, once claimed
            outbox.retry(operator, delivery_id, policy=kz.node.policy())
        assert refused.value.code == "not-retryable"
        operator.rollback()
    row = _row(kz, delivery_id)
    assert (row.state, row.lease_owner) == ("sending", "busy")


@postgres_only
def test_a_host_whose_clock_is_off_the_database_servers_claims_nothing(
    make_federation, monkeypatch, caplog
):
    """Dispatchers on several hosts compare leases each with its own clock: a host
    further off the database server's clock than the lease's margin allows would take
    over live leases, so it claims nothing, and readiness says why."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])["id"]
    dispatcher = Dispatcher(kz.node)
    bound = kz.node.settings.clock_bound
    real = time.time
    monkeypatch.setattr(gateway.db, "host_clock", lambda: real() + 2 * bound + 1)
    with pytest.raises(ClockSkew, match="synchronise the clock"):
        dispatcher.run_once()
    # The loop logs it and waits; until-idle, which would never be idle, stops with it.
    dispatcher.run(stop_after=0.2)
    assert "[clock-skew]" in caplog.text and "synchronise the clock" in caplog.text
    with pytest.raises(ClockSkew):
        dispatcher.run(until_idle=True)
    for flag in ("--once", "--until-idle"):
        result = gateway_cli(kz, "dispatch", flag)
        assert result.exit_code == 2, result.output
        assert "error [clock-skew]: this host's clock is +" in result.output
    with kz.node.sessions() as session:
        (row,) = session.scalars(select(Delivery)).all()
        assert (row.state, row.attempts, row.lease_owner) == (DeliveryState.QUEUED, 0, None)
    ready = kz.client().get("/readyz")
    assert ready.status_code == 503
    assert [a["code"] for a in ready.get_json()["alarms"]] == ["clock-skew"]

    monkeypatch.setattr(gateway.db, "host_clock", lambda: real() - bound / 2)  # within
    assert [o.state for o in dispatcher.run_once()] == [DeliveryState.DELIVERED]
    assert inbox_count(kg, "KZ") == 1 and kz.client().get("/readyz").status_code == 200
    assert inbox_count(kg, "KZ", message_id) == 1


class _Stopped(Exception):
    """Raised by a test to stop a running dispatcher."""


def test_a_round_that_fails_on_the_database_is_logged_and_tried_again(
    make_federation, monkeypatch, caplog
):
    """PostgreSQL restarting, or SQLite locked past its busy timeout: a running
    dispatcher says so (the traceback once), pauses longer after each failure, tries
    the failed duty again in the next round (not an interval later), and says when
    the database is usable again; with ``until_idle`` (a command that should finish)
    the error is raised."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    sent = submit(kz, ["KG"])
    pauses: list[float] = []
    monkeypatch.setattr(dispatcher_module, "_pause", pauses.append)
    monkeypatch.setattr(dispatcher_module, "DATABASE_PAUSE", 1.0)
    dispatcher = Dispatcher(kz.node)
    locked = OperationalError(None, None, sqlite3.OperationalError("database is locked"))
    purges: list[int] = []

    def purge_fails(times: int) -> Callable[[], None]:
        def purge() -> None:
            purges.append(1)
            if len(purges) <= times:
                raise locked

        return purge

    dispatcher._purge = purge_fails(2)  # type: ignore[method-assign]
    # Stopped at the round after the one that sent (not after a time a loaded machine
    # could need for the first three rounds).
    one_round = dispatcher._round
    sent_in: list[int] = []

    def until_sent(rounds, *, until_idle):  # type: ignore[no-untyped-def]
        if sent_in:
            raise _Stopped
        outcomes = one_round(rounds, until_idle=until_idle)
        if outcomes:
            sent_in.append(len(purges))
        return outcomes

    dispatcher._round = until_sent  # type: ignore[method-assign]
    with caplog.at_level("INFO", logger="gateway.dispatcher"), pytest.raises(_Stopped):
        dispatcher.run(stop_after=60)
    dispatcher._round = one_round  # type: ignore[method-assign]
    assert sent_in == [3]
    assert pauses == [1.0, 2.0]
    assert len(purges) == 3  # the third round purged, and only then did it send
    failures = [r for r in caplog.records if "could not be used" in r.getMessage()]
    assert [bool(r.exc_info) for r in failures] == [True, False]
    assert "(database is locked)" in failures[0].getMessage()
    assert "usable again after 2 failed rounds" in caplog.text
    assert inbox_count(fed["KG"], "KZ", sent["id"]) == 1
    purges.clear()
    dispatcher._purge = purge_fails(1)  # type: ignore[method-assign]
    with pytest.raises(OperationalError):
        dispatcher.run(until_idle=True)


def test_the_pause_after_database_failures_doubles_up_to_a_minute():
    pauses = [dispatcher_module.database_pause(n) for n in (1, 2, 3, 4, 5, 10, 100_000)]
    assert pauses == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def _stored_then_denied_here(fed) -> int:
    """KZ's delivery to KG: KG stores the envelope but its answer is lost; before the
    next attempt KZ's own policy stops the message (rejected, policy-denied, nothing
    sent); then the policy allows it again and the agency retries. The delivery id."""
    from tests.test_policy_exchange import KZ_POLICY, write_policy

    kz, kg = fed["KZ"], fed["KG"]
    write_policy(kz, KZ_POLICY)
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    inner = _losing_the_answer(kg, stored=True)
    [lost] = Dispatcher(kz.node).run_once()
    assert (lost.state, inbox_count(kg)) == ("retrying", 1)
    kg.server.switch.app = inner
    write_policy(kz, "version = 1\n")
    [denied] = Dispatcher(kz.node).run_once(now=int(time.time()) + 5)
    assert (denied.state, denied.code) == ("rejected", "policy-denied")
    write_policy(kz, KZ_POLICY)
    answer = kz.client().post(f"/api/v1/deliveries/{delivery_id}/retry", headers=kz.auth())
    assert answer.status_code == 200, answer.get_json()
    return delivery_id


def test_a_local_policy_denial_proves_nothing_about_an_earlier_attempt(make_federation):
    """The node's own decision not to send is `rejected` too, but unlike the recipient's
    signed refusal it says nothing about what an earlier attempt left there: the same
    bytes go first, and KG holds the message once (it was re-sealed under a new id)."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _stored_then_denied_here(fed)
    revoke_encryption_key(fed, "KG", int(time.time()), drop=True)
    [again] = Dispatcher(kz.node).run_once(now=int(time.time()) + 10)
    assert again.state == "delivered" and "resealed" not in _events(kz)
    assert (len(_envelopes(kz)), inbox_count(kg)) == (1, 1)


def test_a_withdrawal_after_a_local_denial_does_not_say_the_recipient_never_had_it(
    make_federation,
):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    delivery_id = _stored_then_denied_here(fed)
    with kz.node.sessions() as session:
        message_id = session.get(Delivery, delivery_id).message_id
    _withdraw(kz, message_id)
    assert "may have arrived" in _row(kz, delivery_id).last_detail


def _stored_then_refused_as_expired(fed, monkeypatch) -> int:
    """KZ's delivery to KG: KG stores the envelope but its answer is lost; at the next
    attempt KG's clock runs past the envelope's expiry, so KG refuses it, signed, as
    `expired` (PROTOCOL §3 step 5, before its replay check); then KG's clock is set
    right and the agency retries. The delivery id."""
    import types

    import gateway.inbox

    kz, kg = fed["KZ"], fed["KG"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    inner = _losing_the_answer(kg, stored=True)
    [lost] = Dispatcher(kz.node).run_once()
    assert (lost.state, inbox_count(kg)) == ("retrying", 1)
    kg.server.switch.app = inner
    ahead = kz.node.settings.message_ttl + 600
    with monkeypatch.context() as patched:
        clock = types.SimpleNamespace(time=lambda: time.time() + ahead)
        patched.setattr(gateway.inbox, "time", clock)
        [refused] = Dispatcher(kz.node).run_once(now=int(time.time()) + 5)
    assert (refused.state, refused.code) == ("rejected", "expired")
    row = _row(kz, delivery_id)
    assert "an earlier attempt may have reached KG" in row.last_detail
    answer = kz.client().post(f"/api/v1/deliveries/{delivery_id}/retry", headers=kz.auth())
    assert answer.status_code == 200, answer.get_json()
    return delivery_id


def test_a_signed_refusal_from_before_the_replay_check_proves_nothing_stored(
    make_federation, monkeypatch
):
    """A signed `expired` comes before the recipient looks for a stored copy: after it,
    KG's key is replaced, and the same bytes go first (KG answers with the receipt it
    stored), not a new envelope that KG would store beside the first."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    _stored_then_refused_as_expired(fed, monkeypatch)
    revoke_encryption_key(fed, "KG", int(time.time()), drop=True)
    [again] = Dispatcher(kz.node).run_once(now=int(time.time()) + 10)
    assert again.state == "delivered" and "resealed" not in _events(kz)
    assert (len(_envelopes(kz)), inbox_count(kg)) == (1, 1)


def test_a_withdrawal_after_a_refusal_before_the_replay_check_says_it_may_have_arrived(
    make_federation, monkeypatch
):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    delivery_id = _stored_then_refused_as_expired(fed, monkeypatch)
    with kz.node.sessions() as session:
        message_id = session.get(Delivery, delivery_id).message_id
    _withdraw(kz, message_id)
    assert "may have arrived" in _row(kz, delivery_id).last_detail


def test_a_signed_refusal_after_the_replay_check_proves_nothing_was_stored(make_federation):
    """KG's refusal at step 8 (its schema check, after its replay check) proves that it
    holds nothing: the detail does not warn of an earlier copy, and the event says so."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    inner = _losing_the_answer(kg, stored=False)
    [lost] = Dispatcher(kz.node).run_once()
    assert lost.state == "retrying"
    kg.server.switch.app = inner
    from tests.test_policy_exchange import write_policy

    write_policy(  # KG agreed to send to KZ only
        kg,
        'version = 1\n[[agreement]]\nid = "KG-KZ-out"\npeer = "KZ"\n'
        'types = ["alert/1"]\ndirection = "send"\n',
    )
    [refused] = Dispatcher(kz.node).run_once(now=int(time.time()) + 5)
    assert (refused.state, refused.code) == ("rejected", "policy-denied")
    assert "earlier attempt" not in _row(kz, delivery_id).last_detail
    with kz.node.sessions() as session:
        proven = session.scalars(
            select(DeliveryEvent.unstored_proven).order_by(DeliveryEvent.id.desc())
        ).first()
    assert proven is True


@sqlite_only
def test_a_lease_taken_while_the_clock_ran_ahead_is_taken_over_once_its_owner_stopped(
    make_federation,
):
    """SQLite: a dispatcher claimed a delivery while the host's clock ran an hour ahead,
    then stopped; the clock was set right. Its lease ends an hour later than any lease
    taken now could: another dispatcher takes the delivery over once the owner no
    longer holds the lock on its file (the kernel lets it go when its process ends,
    however it ends), not while it runs, nor from one that announced nothing."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    message_id = submit(kz, ["KG"])["id"]
    lease = kz.node.settings.dispatch_lease
    ahead = int(time.time()) + 3600
    running = Dispatcher(kz.node, worker="running")
    [delivery_id] = running.claim(ahead)
    assert Dispatcher(kz.node).run_once() == []
    assert _row(kz, delivery_id).lease_owner == "running"
    _release(kz, delivery_id)
    older = Dispatcher(kz.node, worker="older")
    older._announce = lambda: None  # a dispatcher of a version before this one
    assert older.claim(ahead) == [delivery_id]
    assert Dispatcher(kz.node).run_once() == []
    assert _row(kz, delivery_id).lease_owner == "older"
    _release(kz, delivery_id)

    stopped = Dispatcher(kz.node, worker="stopped")
    assert stopped.claim(ahead) == [delivery_id]
    assert _row(kz, delivery_id).lease_until == ahead + lease
    assert Dispatcher(kz.node).run_once() == []  # still held
    _kill(stopped)
    [outcome] = Dispatcher(kz.node, worker="right").run_once()
    assert outcome.state == DeliveryState.DELIVERED
    assert inbox_count(kg, "KZ", message_id) == 1
    with kz.node.sessions() as session:
        codes = session.scalars(select(DeliveryEvent.code).order_by(DeliveryEvent.id)).all()
    assert "attempt-interrupted" in codes


@sqlite_only
def test_a_dispatcher_process_that_ends_lets_its_deliveries_go(make_federation):
    """The lock is the process's: a dispatcher killed with SIGKILL holds nothing."""
    fed = make_federation(("KZ", "KG"))
    database = fed["KZ"].node.engine.url.database
    path = dispatcher_module._presence_path(database, "child")
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDING.format(path=path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert not dispatcher_module._stopped(database, "child")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert dispatcher_module._stopped(database, "child")
    assert not dispatcher_module._stopped(database, "never-announced")


_HOLDING = """
import fcntl, os, sys, time
os.makedirs(os.path.dirname({path!r}), exist_ok=True)
f = open({path!r}, "ab")
fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(60)
"""


def _kill(dispatcher: Dispatcher) -> None:
    """What the kernel does to a dispatcher's lock when its process is killed (its file
    stays: nothing ran to remove it)."""
    _, _, (presence, _path, _pid), _ = dispatcher._presence.detach()
    os.close(presence)


@sqlite_only
def test_a_dispatcher_that_ends_of_itself_removes_its_file(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    submit(kz, ["KG"])
    dispatcher = Dispatcher(kz.node, worker="leaving")
    assert [o.state for o in dispatcher.run_once()] == [DeliveryState.DELIVERED]
    folder = kz.node.engine.url.database + "-dispatchers"
    assert len(os.listdir(folder)) == 1
    del dispatcher
    gc.collect()
    assert os.listdir(folder) == []


@sqlite_only
def test_a_file_removed_as_its_dispatcher_ended_proves_nothing_of_a_new_one(
    make_federation, monkeypatch
):
    """A checker that opened a dispatcher's file just before that dispatcher ended
    (and removed it) locks the removed file: a new dispatcher of the same id, holding
    the file now at that path, is not judged stopped."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    database = kz.node.engine.url.database
    ending = Dispatcher(kz.node, worker="same")
    ending._announce()
    opened = os.open(dispatcher_module._presence_path(database, "same"), os.O_RDWR)
    try:
        ending._presence()  # it ends: removes its file, lets go of its lock
        new = Dispatcher(kz.node, worker="same")
        new._announce()
        real_open = os.open
        monkeypatch.setattr(os, "open", lambda *args, **kwargs: os.dup(opened))
        assert not dispatcher_module._stopped(database, "same")
        monkeypatch.setattr(os, "open", real_open)
        assert not dispatcher_module._stopped(database, "same")
        new._presence()
    finally:
        os.close(opened)


@sqlite_only
def test_a_dispatcher_that_cannot_hold_its_file_leaves_none(make_federation, monkeypatch, caplog):
    """Its file is put in place only once locked: one that cannot lock it (a file
    system without locks) leaves no file that would look stopped while it runs; one
    that starts again under the id of a killed one replaces that one's file."""
    fed = make_federation(("KZ", "KG"))
    database = fed["KZ"].node.engine.url.database
    real_flock = dispatcher_module.fcntl.flock

    def refuse(fd, operation):
        raise OSError(errno.ENOLCK, "no locks available")

    unheld = Dispatcher(fed["KZ"].node, worker="unheld")
    monkeypatch.setattr(dispatcher_module.fcntl, "flock", refuse)
    unheld._announce()
    monkeypatch.setattr(dispatcher_module.fcntl, "flock", real_flock)
    assert unheld._presence is None and "cannot hold" in caplog.text
    folder = database + "-dispatchers"
    assert os.listdir(folder) == []
    assert not dispatcher_module._stopped(database, "unheld")
    killed = Dispatcher(fed["KZ"].node, worker="again")
    killed._announce()
    _kill(killed)
    assert dispatcher_module._stopped(database, "again")
    restarted = Dispatcher(fed["KZ"].node, worker="again")
    restarted._announce()
    assert not dispatcher_module._stopped(database, "again")
    assert len(os.listdir(folder)) == 1
    # A child forked from its process that ends of itself leaves the parent's file.
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        restarted._presence()
        os._exit(0 if os.path.exists(dispatcher_module._presence_path(database, "again")) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not dispatcher_module._stopped(database, "again")


def _release(member, delivery_id: int) -> None:
    """Put a claimed delivery back in the queue, as if its attempt had never begun."""
    with member.node.sessions() as session:
        row = session.get(Delivery, delivery_id)
        row.state, row.lease_owner, row.lease_until = DeliveryState.QUEUED, None, None
        row.next_attempt_at = 0
        session.commit()


def test_a_short_lease_of_a_stopped_dispatcher_waits_for_its_end(make_federation):
    """A lease within the usual length is not cut short, whoever owned it: its owner
    may have stopped, but on PostgreSQL it may run on another host, and a lease that
    runs out is taken over anyway."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    submit(kz, ["KG"])
    stopped = Dispatcher(kz.node, worker="stopped")
    [delivery_id] = stopped.claim(int(time.time()))
    if stopped._presence is not None:
        stopped._presence()
    assert Dispatcher(kz.node).run_once() == []
    assert _row(kz, delivery_id).lease_owner == "stopped"
