"""Corrections and withdrawals reach every recipient of the original, and the original
shows as corrected or withdrawn on the sending node and on every receiving node."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from gateway import corrections, onward, outbox, purge, quarantine, tokens, users
from gateway.dispatcher import Dispatcher
from gateway.envelope import seal
from gateway.errors import ApiError
from gateway.models import (
    AuditEntry,
    Delivery,
    DeliveryState,
    EarlyCorrection,
    H2Identifier,
    InboundMessage,
    OutboundMessage,
)
from gateway.outbox import _recipients
from schemas.examples import example_alert, example_correction, example_referral
from tests.conftest import postgres_only


def post(member, typ, body, to=None, expect=202):
    payload = {"typ": typ, "body": body}
    if to is not None:
        payload["to"] = to
    answer = member.client().post("/api/v1/messages", headers=member.auth(), json=payload)
    assert answer.status_code == expect, answer.get_json()
    return answer.get_json()


def deliver(member):
    outcomes = Dispatcher(member.node).run_once()
    assert {o.state for o in outcomes} == {"delivered"}, outcomes


def inbound(member, envelope_id):
    with member.node.sessions() as session:
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == envelope_id)
        ).one()
        session.expunge(row)
        return row


def test_a_correction_goes_to_every_recipient_and_replaces_the_body(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    original = post(kz, "alert/1", example_alert(), ["KG", "UZ"])["id"]
    deliver(kz)

    correction = example_correction(refers_to=original)
    missing = post(kz, "correction/1", correction, ["KG"], expect=422)
    assert missing["error"] == "correction-recipients" and "UZ" in missing["message"]
    sent = post(kz, "correction/1", correction)  # 'to' left out: every recipient
    assert sorted(d["recipient"] for d in sent["deliveries"]) == ["KG", "UZ"]
    deliver(kz)

    view = kz.client().get(f"/api/v1/messages/{original}", headers=kz.auth()).get_json()
    assert (view["state"], view["state_by"]) == ("corrected", sent["id"])
    for member in (kg, uz):
        row = inbound(member, original)
        assert (row.state, row.state_by) == ("corrected", sent["id"])
        listed = member.client().get("/api/v1/inbox", headers=member.auth()).get_json()
        shown = next(m for m in listed["messages"] if m["envelope_id"] == original)
        assert shown["state"] == "corrected"
        assert shown["body"] == correction["body"]  # the corrected body replaced the old one


def test_a_withdrawal_erases_the_payload_at_every_recipient(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    withdrawal = example_correction(refers_to=original, action="withdraw", reason_code="duplicate")
    withdrawal.pop("body")
    post(kz, "correction/1", withdrawal)
    deliver(kz)
    row = inbound(kg, original)
    assert (row.state, row.body_json) == ("withdrawn", None)
    again = post(kz, "correction/1", example_correction(refers_to=original), expect=409)
    assert again["error"] == "already-withdrawn"


def test_only_the_sender_corrects_and_types_must_agree(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    # KG cannot correct KZ's message: it never sent it.
    answer = post(kg, "correction/1", example_correction(refers_to=original), ["KZ"], expect=422)
    assert answer["error"] == "unknown-original"
    wrong = example_correction(refers_to=original, refers_to_type="referral/1")
    wrong.pop("body")
    wrong["action"] = "withdraw"
    assert post(kz, "correction/1", wrong, expect=422)["error"] == "correction-type"


def test_a_correction_from_another_member_changes_nothing(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    # UZ seals a correction of KZ's message for KG by hand (its own node would refuse):
    # KG applies corrections only from the member that sent the original.
    at = int(time.time())
    envelope = seal(
        typ="correction/1",
        body=example_correction(refers_to=original),
        sender="UZ",
        signing_key=uz.node.signing_pair(at),
        recipients=_recipients(uz.node, ["KG"], at),
        tl=uz.node.trust().version,
        iat=at,
        ttl=600,
    )
    answer = kg.client().post("/xb1/envelopes", data=envelope.to_wire())
    assert answer.status_code == 200
    assert inbound(kg, original).state is None
    assert inbound(kg, envelope.header.id).typ == "correction/1"  # kept, not applied


def test_a_withdrawal_stops_undelivered_copies_and_earlier_corrections(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    corrected = post(kz, "correction/1", example_correction(refers_to=original))["id"]
    deliver(kz)
    withdrawal = example_correction(refers_to=original, action="withdraw", reason_code="duplicate")
    withdrawal.pop("body")
    withdrawal_id = post(kz, "correction/1", withdrawal)["id"]
    deliver(kz)
    earlier = inbound(kg, corrected)  # the corrected body it carried is gone too
    assert (earlier.state, earlier.body_json, earlier.wire) == ("withdrawn", None, b"")
    # At the sending node as well: the bodies and envelope bytes of the original and of
    # the earlier correction, with a purged entry naming the withdrawal.
    with kz.node.sessions() as session:
        for message_id in (original, corrected):
            sent = session.get(OutboundMessage, message_id)
            assert (sent.body_json, sent.purged_at is not None) == (None, True)
            assert [e.wire for e in sent.envelopes] == [b""]
        erased = [
            json.loads(entry)
            for entry in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "purged")
            )
        ]
    assert {(e["id"], e["part"], e["by"].startswith("withdrawal ")) for e in erased} == {
        (original, "body and envelope", True),
        (corrected, "body and envelope", True),
    }
    # The withdrawal itself keeps its reason: it carries no data of the original, and
    # is not purged with it.
    for member in (kz, kg):
        with member.node.sessions() as session:
            purge.run(session, member.node.policy(), by="test")
    with kz.node.sessions() as session:
        assert "duplicate" in session.get(OutboundMessage, withdrawal_id).body_json
    assert "duplicate" in inbound(kg, withdrawal_id).body_json

    # A message still waiting for its delivery is not sent once withdrawn.
    pending = post(kz, "alert/1", example_alert(), ["KG"])
    with kz.node.sessions() as session:
        delivery = session.get(Delivery, pending["deliveries"][0]["id"])
        delivery.state, delivery.next_attempt_at = DeliveryState.RETRYING, 2**40
        session.commit()
    stop = example_correction(refers_to=pending["id"], action="withdraw", reason_code="duplicate")
    stop.pop("body")
    post(kz, "correction/1", stop)
    view = kz.client().get(f"/api/v1/messages/{pending['id']}", headers=kz.auth()).get_json()
    [delivery_view] = view["deliveries"]
    assert (delivery_view["state"], delivery_view["last_code"]) == ("expired", "withdrawn")
    retried = kz.client().post(f"/api/v1/deliveries/{delivery_view['id']}/retry", headers=kz.auth())
    assert (retried.status_code, retried.get_json()["error"]) == (409, "already-withdrawn")


def test_a_correction_of_a_purged_message_brings_nothing_back(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    with kg.node.sessions() as session:
        purge.run(session, kg.node.policy(), now=int(time.time()) + 4000 * 86_400, by="test")
    correction = post(kz, "correction/1", example_correction(refers_to=original))["id"]
    deliver(kz)
    row = inbound(kg, original)
    assert (row.state, row.body_json) == ("corrected", None)
    # Nor through the correction's own copy of the (H2) data: purged on arrival.
    copy = inbound(kg, correction)
    assert (copy.body_json, copy.wire) == (None, b"") and copy.purged_at is not None
    assert copy.receipt  # what proves the exchange stays
    listed = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    shown = next(m for m in listed if m["envelope_id"] == correction)
    assert "Nurlanova" not in json.dumps(shown)


def test_a_correction_from_a_role_that_may_not_send_the_type(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    with kz.node.sessions() as session:
        person = users.add(
            session, "c.worker", full_name="C. Worker", agency=kz.agency, role="caseworker", by="t"
        )
        secret = tokens.issue(session, kz.agency, user=person).secret
        session.commit()
    answer = kz.client().post(
        "/api/v1/messages",
        headers={"Authorization": f"Bearer {secret}"},
        json={"typ": "correction/1", "body": example_correction(refers_to=original)},
    )
    assert (answer.status_code, answer.get_json()["error"]) == (403, "not-permitted")


def test_an_erased_correction_stays_hidden_from_roles_that_may_not_read_its_type(
    make_federation,
):
    """A correction counts as the type it corrects; once a withdrawal erases its body,
    that type is unknown, so a role with a limited set of types no longer sees it."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "referral/1", example_referral(), ["KG"])["id"]
    deliver(kz)
    fix = example_correction(
        refers_to=original, refers_to_type="referral/1", body=example_referral()
    )
    correction = post(kz, "correction/1", fix)["id"]
    deliver(kz)
    with kg.node.sessions() as session:
        person = users.add(
            session, "o.fficer", full_name="O", agency=kg.agency, role="officer", by="t"
        )
        secret = tokens.issue(session, kg.agency, "t", user=person).secret
        session.commit()
    officer = {"Authorization": f"Bearer {secret}", "X-Justification": "case 1"}

    def seen(headers):
        answer = kg.client().get("/api/v1/inbox", headers=headers)
        assert answer.status_code == 200, answer.get_json()
        return {m["envelope_id"] for m in answer.get_json()["messages"]}

    assert correction not in seen(officer)
    withdrawal = example_correction(
        refers_to=original, refers_to_type="referral/1", action="withdraw", reason_code="duplicate"
    )
    withdrawal.pop("body")
    post(kz, "correction/1", withdrawal)
    deliver(kz)
    assert correction not in seen(officer)
    assert correction in seen({**kg.auth(), "X-Justification": "case 1"})  # the agency system


def test_a_correction_goes_to_no_state_that_never_received_the_original(make_federation):
    """A withdrawal passes no agreement (it only erases), so its reason must not reach
    a state the original never went to; a correction there would correct nothing."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    withdrawal = example_correction(refers_to=original, action="withdraw", reason_code="duplicate")
    withdrawal.pop("body")
    for body in (example_correction(refers_to=original), withdrawal):
        extra = post(kz, "correction/1", body, ["KG", "UZ"], expect=422)
        assert extra["error"] == "correction-recipients" and "remove UZ" in extra["message"]


# Envelopes sealed by hand, to make them arrive in an order a network may choose.


def sealed(member, typ, body, iat):
    return seal(
        typ=typ,
        body=body,
        sender=member.node.id,
        signing_key=member.node.signing_pair(iat),
        recipients=_recipients(member.node, ["KG"], iat),
        tl=member.node.trust().version,
        iat=iat,
        ttl=600,
    )


def arrive(member, envelope):
    answer = member.client().post("/xb1/envelopes", data=envelope.to_wire())
    assert answer.status_code == 200, answer.get_json()


def correcting(original, birth, corrected_at=None):
    body = example_correction(refers_to=original)
    body["body"]["subjects"][0]["date_of_birth"] = birth
    if corrected_at is not None:
        body["corrected_at"] = corrected_at
    return body


def withdrawing(original):
    body = example_correction(refers_to=original, action="withdraw", reason_code="duplicate")
    body.pop("body")
    return body


def audit_kinds(member, envelope_id):
    with member.node.sessions() as session:
        return [
            json.loads(text)["kind"]
            for (text,) in session.execute(select(AuditEntry.entry))
            if json.loads(text).get("id") == envelope_id
        ]


def erased(member, envelope_id, *, by):
    row = inbound(member, envelope_id)
    assert (row.state, row.state_by, row.body_json, row.wire) == ("withdrawn", by, None, b"")


def early_rows(member):
    with member.node.sessions() as session:
        return session.scalars(select(EarlyCorrection)).all()


def test_corrections_that_overtake_their_original_are_applied_when_it_arrives(make_federation):
    """The original's delivery may still be retried when its correction gets through:
    the correction waits, and is applied the moment the original arrives."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03"), at + 1)
    arrive(kg, fix)
    assert audit_kinds(kg, fix.header.id)[-1] == "correction-unmatched"
    assert len(early_rows(kg)) == 1
    arrive(kg, original)
    row = inbound(kg, original.header.id)
    assert (row.state, row.state_by) == ("corrected", fix.header.id)
    assert json.loads(row.body_json)["subjects"][0]["date_of_birth"] == "2001-08-03"
    assert audit_kinds(kg, fix.header.id)[-1] == "correction-applied"
    assert early_rows(kg) == []

    # A correction and a withdrawal both ahead of their original, the withdrawal first:
    # applied in the order they were signed, so the withdrawal has the last word.
    second = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(second.header.id, "2001-08-03"), at + 1)
    stop = sealed(kz, "correction/1", withdrawing(second.header.id), at + 2)
    for envelope in (stop, fix, second):
        arrive(kg, envelope)
    erased(kg, second.header.id, by=stop.header.id)
    erased(kg, fix.header.id, by=stop.header.id)
    assert inbound(kg, stop.header.id).body_json  # the withdrawal keeps its reason
    assert early_rows(kg) == []


def test_a_correction_overtaken_by_a_later_one_or_by_the_withdrawal(make_federation):
    """The sender's later word holds whichever arrives last: an older correction does
    not replace a newer one, and one that arrives after the withdrawal is erased."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    older = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03"), at + 1)
    newer = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-04"), at + 2)
    for envelope in (original, newer, older):
        arrive(kg, envelope)
    row = inbound(kg, original.header.id)
    assert (row.state, row.state_by) == ("corrected", newer.header.id)
    assert json.loads(row.body_json)["subjects"][0]["date_of_birth"] == "2001-08-04"
    assert audit_kinds(kg, older.header.id)[-1] == "correction-outdated"
    outdated = inbound(kg, older.header.id)  # kept, and shown as outdated by the newer one
    assert (outdated.state, outdated.state_by) == ("outdated", newer.header.id)
    # In the sender's order too: the one applied before is outdated by the next.
    third = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-05", at + 5), at + 3)
    arrive(kg, third)
    replaced = inbound(kg, newer.header.id)
    assert (replaced.state, replaced.state_by) == ("outdated", third.header.id)

    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 3)
    late = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-05"), at + 2)
    arrive(kg, stop)
    assert inbound(kg, stop.header.id).body_json  # the withdrawal keeps its reason
    arrive(kg, late)
    erased(kg, late.header.id, by=stop.header.id)
    assert audit_kinds(kg, late.header.id)[-1] == "correction-outdated"
    assert early_rows(kg) == []


def test_a_withdrawal_stops_an_earlier_correction_still_waiting(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    waiting = post(kz, "correction/1", example_correction(refers_to=original))
    with kz.node.sessions() as session:
        delivery = session.get(Delivery, waiting["deliveries"][0]["id"])
        delivery.state, delivery.next_attempt_at = DeliveryState.RETRYING, 2**40
        session.commit()
    stop = post(kz, "correction/1", withdrawing(original))["id"]
    view = kz.client().get(f"/api/v1/messages/{waiting['id']}", headers=kz.auth()).get_json()
    assert (view["state"], view["state_by"]) == ("withdrawn", stop)
    [delivery_view] = view["deliveries"]
    assert (delivery_view["state"], delivery_view["last_code"]) == ("expired", "withdrawn")
    deliver(kz)  # the withdrawal alone
    with kg.node.sessions() as session:
        got = set(session.scalars(select(InboundMessage.envelope_id)))
    assert waiting["id"] not in got and stop in got


def test_a_correction_read_before_a_withdrawal_committed_is_refused(make_federation):
    """Two requests at once: the original was read before the other's withdrawal
    committed. The withdrawal is not overwritten and the correction is refused."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    with kz.node.sessions() as session:
        read = session.get(OutboundMessage, original)  # read now, still without a state
        session.commit()  # (the session keeps what it read past a commit)
        stop = post(kz, "correction/1", withdrawing(original))["id"]
        with pytest.raises(ApiError) as refused:
            outbox.submit(
                session,
                kz.node,
                agency=kz.agency,
                typ="correction/1",
                body=example_correction(refers_to=original),
                to=None,
            )
        assert (refused.value.code, refused.value.status) == ("already-withdrawn", 409)
        assert stop in refused.value.message
        assert read.state == "withdrawn"  # read again by the refusal
        session.rollback()
    view = kz.client().get(f"/api/v1/messages/{original}", headers=kz.auth()).get_json()
    assert (view["state"], view["state_by"]) == ("withdrawn", stop)


def test_a_withdrawal_ahead_of_its_original_erases_the_corrections_waiting_with_it(
    make_federation,
):
    """The sending node stops the original's delivery once withdrawn, so it may never
    arrive: the data the corrections waiting for it carry goes at once."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03"), at + 1)
    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 2)
    arrive(kg, fix)
    arrive(kg, stop)
    erased(kg, fix.header.id, by=stop.header.id)
    # The other way round: a correction arriving after a waiting withdrawal.
    other = sealed(kz, "alert/1", example_alert(), at)
    stop = sealed(kz, "correction/1", withdrawing(other.header.id), at + 2)
    fix = sealed(kz, "correction/1", correcting(other.header.id, "2001-08-03"), at + 1)
    arrive(kg, stop)
    arrive(kg, fix)
    erased(kg, fix.header.id, by=stop.header.id)
    assert inbound(kg, stop.header.id).body_json  # the withdrawal keeps its reason


def test_an_outdated_correction_of_a_purged_original_is_purged_too(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    older = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03", at), at + 1)
    newer = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-04", at + 1), at + 2)
    arrive(kg, original)
    with kg.node.sessions() as session:
        purge.run(session, kg.node.policy(), now=at + 5000 * 86_400, by="test")
    arrive(kg, newer)
    arrive(kg, older)
    for correction in (newer, older):
        row = inbound(kg, correction.header.id)
        assert (row.body_json, row.wire) == (None, b"") and row.purged_at is not None
    assert audit_kinds(kg, older.header.id)[-2:] == ["purged", "correction-outdated"]


def test_corrections_apply_in_the_order_of_corrected_at_even_when_sealed_again(
    make_federation,
):
    """A correction sealed again (a key changed while it waited) carries a later iat
    than a correction made after it; corrected_at, in the body, keeps the order."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    made_first = correcting(original.header.id, "2001-01-01", corrected_at=at - 60)
    made_later = correcting(original.header.id, "2002-02-02", corrected_at=at - 30)
    later = sealed(kz, "correction/1", made_later, at + 1)
    resealed_first = sealed(kz, "correction/1", made_first, at + 5)
    for envelope in (original, later, resealed_first):
        arrive(kg, envelope)
    row = inbound(kg, original.header.id)
    assert row.state_by == later.header.id
    assert json.loads(row.body_json)["subjects"][0]["date_of_birth"] == "2002-02-02"
    assert audit_kinds(kg, resealed_first.header.id)[-1] == "correction-outdated"


def test_the_sending_node_keeps_corrected_at_in_order(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    first = correcting(original, "2001-01-01", corrected_at=1_800_000_000)
    post(kz, "correction/1", first)
    again = correcting(original, "2002-02-02", corrected_at=1_800_000_000)
    refused = post(kz, "correction/1", again, expect=422)
    assert refused["error"] == "correction-order" and "1800000000" in refused["message"]
    post(kz, "correction/1", correcting(original, "2002-02-02", corrected_at=1_800_000_001))
    post(kz, "correction/1", withdrawing(original))  # a withdrawal has the last word anyway


def test_a_withdrawal_stops_a_waiting_correction_whose_body_was_purged(make_federation):
    """Retention may purge a correction's body while its envelope still waits for a
    delivery: the withdrawal still finds it (by its audit entry) and stops it."""
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    body = example_correction(refers_to=original)
    body["retention_days"] = 1
    waiting = post(kz, "correction/1", body)
    with kz.node.sessions() as session:
        delivery = session.get(Delivery, waiting["deliveries"][0]["id"])
        delivery.state, delivery.next_attempt_at = DeliveryState.RETRYING, 2**40
        session.commit()
    with kz.node.sessions() as session:
        [gone] = purge.run(session, kz.node.policy(), now=int(time.time()) + 2 * 86_400, by="t")
    assert (gone.message, gone.part) == (waiting["id"], "body")
    stop = post(kz, "correction/1", withdrawing(original))["id"]
    view = kz.client().get(f"/api/v1/messages/{waiting['id']}", headers=kz.auth()).get_json()
    assert (view["state"], view["state_by"]) == ("withdrawn", stop)
    assert (view["deliveries"][0]["state"], view["deliveries"][0]["last_code"]) == (
        "expired",
        "withdrawn",
    )


def hold(member, envelope_id):
    """Hold a received message in quarantine, as a revocation of its signing key would."""
    row_id = inbound(member, envelope_id).id
    with member.node.sessions() as session:
        session.get(InboundMessage, row_id).quarantined_at = int(time.time())
        session.commit()
    return row_id


def release(member, row_id):
    with member.node.sessions() as session:
        quarantine.release(session, row_id, reason="confirmed by phone", who="KG operator")
        session.commit()


def held_correction_then_original(make_federation):
    """A correction that came before its original, held in quarantine when the original
    arrives: (KG, original, correction, the correction's row id)."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03"), at + 1)
    arrive(kg, fix)
    held_id = hold(kg, fix.header.id)
    arrive(kg, original)
    return kg, original, fix, held_id


def test_a_waiting_correction_held_in_quarantine_waits_until_released(make_federation):
    kg, original, fix, held_id = held_correction_then_original(make_federation)
    assert inbound(kg, original.header.id).state is None
    assert len(early_rows(kg)) == 1
    release(kg, held_id)
    row = inbound(kg, original.header.id)
    assert (row.state, row.state_by) == ("corrected", fix.header.id)
    assert early_rows(kg) == []


@postgres_only
def test_h2_identifiers_recorded_meanwhile_do_not_survive_a_withdrawal(make_federation):
    """On PostgreSQL the withdrawal waits for a transaction recording the original's
    H2 identifiers, then removes what it recorded."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    arrive(kg, original)
    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 1)
    recording = kg.node.sessions()
    onward.catch_up(recording, at)  # the original's row locked, identifiers not committed
    done = threading.Event()
    worker = threading.Thread(target=lambda: (arrive(kg, stop), done.set()))
    worker.start()
    time.sleep(1.0)
    recording.commit()
    recording.close()
    worker.join(30)
    assert done.is_set()
    row = inbound(kg, original.header.id)
    assert row.state == "withdrawn"
    with kg.node.sessions() as session:
        left = session.scalars(select(H2Identifier).where(H2Identifier.inbound_id == row.id)).all()
    assert left == []


@pytest.mark.parametrize(
    ("sealed_at", "column_kept"),
    [
        # Retention purged the newer correction's own copy; its corrected_at stays, so
        # an older one sealed again later still does not replace it.
        ((1, 5), True),
        # Purged before the upgrade that keeps corrected_at: compared by sealing time.
        ((2, 1), False),
    ],
)
def test_the_order_holds_when_the_applied_correction_was_purged(
    make_federation, sealed_at, column_kept
):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    newer, older = (
        sealed(kz, "correction/1", correcting(original.header.id, birth, at - ago), at + after)
        for birth, ago, after in (
            ("2002-02-02", 30, sealed_at[0]),
            ("2001-01-01", 60, sealed_at[1]),
        )
    )
    arrive(kg, original)
    arrive(kg, newer)
    with kg.node.sessions() as session:  # as retention would purge it
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == newer.header.id)
        ).one()
        row.body_json, row.wire, row.purged_at = None, b"", at
        if not column_kept:
            row.corrected_at = None
        session.commit()
    arrive(kg, older)
    row = inbound(kg, original.header.id)
    assert row.state_by == newer.header.id
    assert json.loads(row.body_json)["subjects"][0]["date_of_birth"] == "2002-02-02"


def test_the_sending_node_keeps_the_order_after_a_purge_and_against_a_concurrent_one(
    make_federation,
):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    first = correcting(original, "2001-01-01", corrected_at=1_800_000_010)
    first["retention_days"] = 1
    post(kz, "correction/1", first)
    deliver(kz)
    with kz.node.sessions() as session:
        purge.run(session, kz.node.policy(), now=int(time.time()) + 2 * 86_400, by="t")
    earlier = correcting(original, "2002-02-02", corrected_at=1_800_000_000)
    assert post(kz, "correction/1", earlier, expect=422)["error"] == "correction-order"
    # Two requests at once: this one read the original before the other committed.
    with kz.node.sessions() as session:
        read = session.get(OutboundMessage, original)
        session.commit()
        other = post(kz, "correction/1", correcting(original, "2003-03-03", 1_800_000_030))
        with pytest.raises(ApiError) as refused:
            outbox.submit(
                session,
                kz.node,
                agency=kz.agency,
                typ="correction/1",
                body=correcting(original, "2004-04-04", 1_800_000_020),
                to=None,
            )
        assert (refused.value.code, refused.value.status) == ("correction-conflict", 409)
        assert other["id"] in refused.value.message and read.state_by == other["id"]
        session.rollback()


def test_a_withdrawal_held_in_quarantine_erases_nothing_until_released(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 2)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03"), at + 1)
    arrive(kg, stop)
    held_id = hold(kg, stop.header.id)
    arrive(kg, fix)
    assert inbound(kg, fix.header.id).body_json  # a held withdrawal does not count yet
    release(kg, held_id)
    erased(kg, fix.header.id, by=stop.header.id)


def test_a_message_is_released_once_when_two_operators_release_it(make_federation):
    """The second release waits for the first to commit, then finds it released."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    held = sealed(kz, "alert/1", example_alert(), int(time.time()))
    arrive(kg, held)
    held_id = hold(kg, held.header.id)
    first = kg.node.sessions()
    quarantine.release(first, held_id, reason="checked by phone", who="operator A")
    outcome = {}

    def second() -> None:
        with kg.node.sessions() as session:
            try:
                quarantine.release(session, held_id, reason="checked by phone", who="operator B")
                session.commit()
                outcome["second"] = "released"
            except ApiError as e:
                outcome["second"] = e.code

    worker = threading.Thread(target=second)
    worker.start()
    time.sleep(0.5)
    first.commit()
    first.close()
    worker.join(30)
    assert outcome == {"second": "not-held"}
    assert audit_kinds(kg, held.header.id).count("quarantine-release") == 1
    assert inbound(kg, held.header.id).released_by == "operator A"


def test_a_correction_purged_before_it_applies_is_not_purged_again(make_federation):
    """A correction waiting (held) for its original, whose own retention ended: when
    it is applied to a purged original at last, its purge is not recorded twice."""
    kg, original, fix, held_id = held_correction_then_original(make_federation)
    purged_at = int(time.time()) - 10
    with kg.node.sessions() as session:  # both past their retention: purged
        for row in session.scalars(select(InboundMessage)):
            row.body_json, row.wire, row.purged_at = None, b"", purged_at
        session.commit()
    release(kg, held_id)
    assert (inbound(kg, original.header.id).state, inbound(kg, fix.header.id).purged_at) == (
        "corrected",
        purged_at,
    )
    assert "purged" not in audit_kinds(kg, fix.header.id)


def test_the_data_protection_report_lists_corrections_waiting_and_stale(make_federation):
    """A correction waiting for its original is in the report; once its original can
    no longer arrive under the id it names (max_ttl and the skew after sealing), it
    is stale, and the report command exits 3."""
    from click.testing import CliRunner

    from gateway.audit import oversight
    from gateway.cli import main

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 1)
    arrive(kg, stop)
    settings = kg.node.settings
    horizon = stop.header.iat + settings.max_ttl + settings.clock_skew
    with kg.node.sessions() as session:
        [item] = oversight.waiting_corrections(session, settings, at + 10)
        [last_moment] = oversight.waiting_corrections(session, settings, horizon)
        [later] = oversight.waiting_corrections(session, settings, horizon + 1)
    assert (last_moment["stale"], later["stale"]) == (False, True)
    assert item == {
        "sender": "KZ",
        "correction": stop.header.id,
        "inbound": inbound(kg, stop.header.id).id,
        "action": "withdraw",
        "refers_to": original.header.id,
        "refers_to_type": "alert/1",
        "received_at": item["received_at"],
        "held": False,
        "stale": False,
    }
    result = oversight.report_for(kg.node, None, None, by="test")
    assert result["waiting_corrections"] == [item]
    row_id = inbound(kg, stop.header.id).id
    shown = (
        f"KZ withdraw {stop.header.id} (inbox {row_id}) of alert/1 {original.header.id}: waiting"
    )
    assert shown in (oversight.render(result, settings))
    args = ["--instance", str(kg.instance), "audit", "dpo", "--by", "A. DPO"]
    assert CliRunner().invoke(main, args).exit_code == 0  # nothing flagged, nothing stale
    # Sealed longer ago than any envelope may live: stale.
    with kg.node.sessions() as session:
        session.execute(
            InboundMessage.__table__.update()
            .where(InboundMessage.envelope_id == stop.header.id)
            .values(iat=at - settings.max_ttl - settings.clock_skew - 60)
        )
        session.commit()
    answer = CliRunner().invoke(main, args)
    assert answer.exit_code == 3, answer.output
    assert "STALE: the original cannot arrive under this id any more" in answer.output
    arrive(kg, original)  # it came after all: applied, and no longer waiting
    with kg.node.sessions() as session:
        assert oversight.waiting_corrections(session, settings, at) == []


def test_a_dismissed_withdrawal_neither_erases_nor_withdraws(make_federation):
    """The operator dismissed a withdrawal waiting for its original: a correction that
    comes later keeps its data, and when the original comes, the correction applies
    and the withdrawal does not."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "1999-09-09"), at + 1)
    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 2)
    arrive(kg, stop)
    with kg.node.sessions() as session:
        corrections.dismiss_waiting(
            session, inbound(kg, stop.header.id).id, reason="handled by phone", who="KG op"
        )
        session.commit()
    arrive(kg, fix)
    assert inbound(kg, fix.header.id).body_json
    arrive(kg, original)
    row = inbound(kg, original.header.id)
    assert (row.state, row.state_by) == ("corrected", fix.header.id)
    assert "1999-09-09" in row.body_json


def test_a_stale_correction_is_dismissed_with_a_reason_and_a_held_one_is_not_stale(
    make_federation,
):
    """The operator dealt with a correction whose original never came under its id:
    dismissing it (recorded) ends the report's alarm; the correction stays, and is not
    applied should the original come after all. A held one is shown as held."""
    from click.testing import CliRunner

    from gateway.audit import oversight
    from gateway.cli import main

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    at = int(time.time())
    original = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "1999-09-09"), at + 1)
    arrive(kg, fix)
    settings = kg.node.settings
    later = at + settings.max_ttl + settings.clock_skew + 60
    row_id = inbound(kg, fix.header.id).id
    with kg.node.sessions() as session:
        [item] = oversight.waiting_corrections(session, settings, later)
    assert (item["held"], item["stale"]) == (False, True)
    held_id = hold(kg, fix.header.id)
    with kg.node.sessions() as session:
        [item] = oversight.waiting_corrections(session, settings, later)
    assert (item["held"], item["stale"]) == (True, False)
    assert "held in quarantine" in oversight.render(
        {**oversight.report_for(kg.node, None, None, by="test"), "waiting_corrections": [item]},
        settings,
    )
    release(kg, held_id)

    runner, base = CliRunner(), ["--instance", str(kg.instance), "inbox", "dismiss-correction"]
    missing = runner.invoke(main, [*base, str(row_id), "--by", "KG operator"])
    assert missing.exit_code == 2 and "--reason" in missing.output
    done = runner.invoke(
        main,
        [
            *base,
            str(row_id),
            "--reason",
            "applied by hand to the copy KZ sealed again",
            "--by",
            "KG operator",
        ],
    )
    assert done.exit_code == 0, done.output
    assert f"Correction {fix.header.id} (inbound {row_id}) no longer waits." in done.output
    assert "correction-dismissed" in audit_kinds(kg, fix.header.id)
    again = runner.invoke(main, [*base, str(row_id), "--reason", "again", "--by", "KG operator"])
    assert again.exit_code != 0 and "not-waiting" in again.output
    with kg.node.sessions() as session:
        assert oversight.waiting_corrections(session, settings, later) == []
    assert inbound(kg, fix.header.id).state == "dismissed"
    assert inbound(kg, fix.header.id).body_json  # the correction itself stays
    # The sender withdraws the original, which still has not come: what the dismissed
    # correction carries goes too, and it stays out of the report; another correction
    # waiting, erased by the withdrawal, can be dismissed as well.
    other = sealed(kz, "correction/1", correcting(original.header.id, "1998-01-01"), at + 1)
    arrive(kg, other)
    stop = sealed(kz, "correction/1", withdrawing(original.header.id), at + 2)
    arrive(kg, stop)
    row = inbound(kg, fix.header.id)
    assert (row.state, row.body_json) == ("dismissed", None)
    assert inbound(kg, other.header.id).state == "withdrawn"
    with kg.node.sessions() as session:
        waiting = oversight.waiting_corrections(session, settings, later)
    assert [item["correction"] for item in waiting] == [other.header.id, stop.header.id]
    other_id = inbound(kg, other.header.id).id
    erased_too = runner.invoke(
        main, [*base, str(other_id), "--reason", "withdrawn anyway", "--by", "KG operator"]
    )
    assert erased_too.exit_code == 0, erased_too.output
    with kg.node.sessions() as session:
        waiting = oversight.waiting_corrections(session, settings, later)
    assert [item["correction"] for item in waiting] == [stop.header.id]
    arrive(kg, original)  # it came after all: withdrawn, the dismissed one not applied
    assert inbound(kg, original.header.id).state == "withdrawn"
    assert "correction-applied" not in audit_kinds(kg, fix.header.id)


def test_a_correction_is_shown_with_the_stricter_handling_of_itself_and_its_body():
    """A correction labelled H0 may carry an H2 body (the standard checks each on its
    own): the inbox shows the body's H2 notice with it, not the correction's H0."""
    from gateway.inbox import handling_notice
    from schemas.examples import example_alert, example_correction

    strict = example_alert()
    strict["handling"] = {"code": "H2"}
    lax = example_correction(body=strict, handling={"code": "H0"})
    assert handling_notice(lax)["code"] == "H2"
    assert handling_notice(lax)["notice"].startswith("H2: no onward dissemination")
    own = example_correction(body=example_alert(), handling={"code": "H3", "text": "ask first"})
    assert handling_notice(own)["code"] == "H3"  # its own, stricter than the body's
    assert handling_notice(own)["notice"].endswith(": ask first")


def test_both_h3_texts_go_with_a_correction_of_an_h3_body():
    from gateway.inbox import handling_notice
    from schemas.examples import example_alert, example_correction

    restricted = example_alert()
    restricted["handling"] = {"code": "H3", "text": "not to customs or border guards"}
    correction = example_correction(handling={"code": "H3", "text": "ask before use"})
    correction["body"] = restricted
    notice = handling_notice(correction)["notice"]
    assert "ask before use" in notice and "not to customs or border guards" in notice
