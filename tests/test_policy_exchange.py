"""The policy file in force between live nodes: agreements allow and deny both ways,
each decision recorded with its rule; minimised fields never leave the node."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from gateway.dispatcher import Dispatcher
from gateway.envelope import open_envelope
from gateway.models import AuditEntry, InboundRejection, OutboundMessage, SealedEnvelope
from schemas import xb1json
from schemas.examples import EXAMPLE_ALERTS, example_alert

KZ_POLICY = """
version = 1

[[agreement]]
id = "KZ-KG-2019"
peer = "KG"
types = ["alert/1"]
purposes = ["*"]
direction = "both"
"""


def write_policy(member, text):
    (member.instance / "policy.toml").write_text(text, encoding="utf-8")


def post(member, to, body=None, **extra):
    return member.client().post(
        "/api/v1/messages",
        headers=member.auth(),
        json={"typ": "alert/1", "body": body or example_alert(), "to": to, **extra},
    )


def policy_entries(member):
    with member.node.sessions() as session:
        return [
            xb1json.loads(raw)
            for raw in session.scalars(select(AuditEntry.entry).where(AuditEntry.kind == "policy"))
        ]


@pytest.fixture
def fed(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    write_policy(fed["KZ"], KZ_POLICY)
    return fed


def test_sending_needs_an_agreement_and_every_decision_is_recorded(fed):
    kz = fed["KZ"]
    assert post(kz, ["KG"]).status_code == 202
    answer = post(kz, ["KG", "UZ"])
    assert answer.status_code == 403
    problem = answer.get_json()
    assert problem["error"] == "policy-denied" and problem["details"]["rules"] == ["no-agreement"]
    assert "UZ" in problem["message"]
    with kz.node.sessions() as session:
        assert len(session.scalars(select(OutboundMessage)).all()) == 1  # nothing stored
    decisions = [(e["peer"], e["allowed"], e["rule"]) for e in policy_entries(kz)]
    assert decisions == [
        ("KG", True, "agreement:KZ-KG-2019"),
        ("KG", True, "agreement:KZ-KG-2019"),
        ("UZ", False, "no-agreement"),
    ]


def test_an_ended_agreement_is_named(fed):
    kz = fed["KZ"]
    write_policy(kz, KZ_POLICY + "until = 2020-01-01\n")
    answer = post(kz, ["KG"])
    assert answer.status_code == 403
    assert answer.get_json()["details"]["rules"] == ["agreement:KZ-KG-2019"]
    assert "ended on 2020-01-01" in answer.get_json()["message"]


def test_receiving_needs_an_agreement_too(fed):
    kz, kg = fed["KZ"], fed["KG"]
    # KG agreed to send to KZ only: what KZ sends it is refused with a signed receipt.
    write_policy(
        kg,
        'version = 1\n[[agreement]]\nid = "KG-KZ-out"\npeer = "KZ"\n'
        'types = ["alert/1"]\ndirection = "send"\n',
    )
    submitted = post(kz, ["KG"])
    assert submitted.status_code == 202
    [delivery] = submitted.get_json()["deliveries"]
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied")
    with kg.node.sessions() as session:
        [refused] = session.scalars(select(InboundRejection)).all()
        assert refused.code == "policy-denied" and "no-agreement" in refused.detail
    # Once KG agrees to receive, a retry goes through.
    write_policy(
        kg,
        'version = 1\n[[agreement]]\nid = "KG-KZ"\npeer = "KZ"\ntypes = ["alert/1"]\n',
    )
    retried = kz.client().post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=kz.auth())
    assert retried.status_code == 200, retried.get_json()
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
    with kg.node.sessions() as session:
        [accepted] = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.kind == "envelope-accepted")
        ).all()
    assert xb1json.loads(accepted)["rule"] == "agreement:KG-KZ"


def sealed_payload(sender, recipient, message_id):
    with sender.node.sessions() as session:
        wire = session.scalars(
            select(SealedEnvelope.wire).where(SealedEnvelope.message_id == message_id)
        ).one()
    opened = open_envelope(
        wire,
        node=recipient.id,
        trust=recipient.node.trust().keys,
        enc_keys=recipient.node.keys.encryption_keys,
        now=int(time.time()),
    )
    return opened.body


def test_minimised_fields_never_leave_the_node(fed):
    kz, kg = fed["KZ"], fed["KG"]
    body = example_alert()  # a trafficked-person alert naming a victim and a suspect
    assert {s["category"] for s in body["subjects"]} == {"victim", "suspect"}

    to_police = post(kz, ["KG"], body, audience="police")
    assert to_police.status_code == 202 and "minimised" not in to_police.get_json()
    sent = sealed_payload(kz, kg, to_police.get_json()["id"])
    assert {s["category"] for s in sent["subjects"]} == {"victim", "suspect"}

    to_ngo = post(kz, ["KG"], body, audience="ngo")
    assert to_ngo.status_code == 202
    removed = [{"rule": "ngo-no-suspect-data", "path": "**.subjects[category=suspect]"}]
    assert to_ngo.get_json()["minimised"] == removed
    # Said again to a client whose answer was lost (the same Idempotency-Key), and in
    # the message's view.
    headers = {**kz.auth(), "Idempotency-Key": "ngo-alert-1"}
    request = {"typ": "alert/1", "body": body, "to": ["KG"], "audience": "ngo"}
    first = kz.client().post("/api/v1/messages", headers=headers, json=request)
    again = kz.client().post("/api/v1/messages", headers=headers, json=request)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.get_json()["minimised"] == again.get_json()["minimised"] == removed
    shown = kz.client().get(f"/api/v1/messages/{first.get_json()['id']}", headers=kz.auth())
    assert shown.get_json()["minimised"] == removed
    sent = sealed_payload(kz, kg, to_ngo.get_json()["id"])
    assert [s["category"] for s in sent["subjects"]] == ["victim"]
    suspect_names = [
        name["original"]
        for s in body["subjects"]
        if s["category"] == "suspect"
        for name in s["names"]
    ]
    with kz.node.sessions() as session:
        stored = session.get(OutboundMessage, to_ngo.get_json()["id"]).body_json
    assert not any(name in stored for name in suspect_names)  # not even kept locally


def test_a_message_that_minimisation_empties_is_refused(fed):
    kz = fed["KZ"]
    wanted = EXAMPLE_ALERTS["tj-wanted-suspect"]()
    answer = post(kz, ["KG"], wanted, audience="ngo")
    assert answer.status_code == 403
    problem = answer.get_json()
    assert problem["error"] == "policy-denied"
    assert problem["details"]["rules"] == ["ngo-no-suspect-data"]
    answer = post(kz, ["KG"], audience="press")
    assert (answer.status_code, answer.get_json()["error"]) == (422, "bad-audience")


def test_a_policy_file_that_disappears_leaves_the_last_policy_in_force(fed, caplog):
    kz = fed["KZ"]
    assert post(kz, ["UZ"]).status_code == 403
    assert kz.client().get("/readyz").get_json()["notices"] == []
    (kz.instance / "policy.toml").unlink()
    assert post(kz, ["UZ"]).status_code == 403  # never open by accident
    assert "has disappeared" in caplog.text
    # Said on /readyz too (a notice: the node goes on, under the last policy).
    ready = kz.client().get("/readyz")
    [notice] = ready.get_json()["notices"]
    assert notice["code"] == "policy-not-reloaded" and "has disappeared" in notice["message"]
    # A file that does not load: the same; a good one again: nothing to say.
    (kz.instance / "policy.toml").write_text("version = [", encoding="utf-8")
    [notice] = kz.client().get("/readyz").get_json()["notices"]
    assert notice["code"] == "policy-not-reloaded" and "does not load" in notice["message"]
    write_policy(kz, KZ_POLICY)
    assert kz.client().get("/readyz").get_json()["notices"] == []
    # Moved away and back unchanged (the same time and size as when it last loaded).
    kept = kz.instance / "policy.kept"
    (kz.instance / "policy.toml").rename(kept)
    assert kz.client().get("/readyz").get_json()["notices"][0]["code"] == "policy-not-reloaded"
    kept.rename(kz.instance / "policy.toml")
    assert kz.client().get("/readyz").get_json()["notices"] == []


def test_a_node_started_without_a_policy_says_so_until_a_file_loads(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    [notice] = kz.client().get("/readyz").get_json()["notices"]
    assert notice["code"] == "no-policy"
    (kz.instance / "policy.toml").write_text("version = [", encoding="utf-8")
    [notice] = kz.client().get("/readyz").get_json()["notices"]
    assert notice["code"] == "policy-not-reloaded"
    assert "does not load" in notice["message"] and "every exchange is allowed" in notice["message"]
    write_policy(kz, KZ_POLICY)
    assert kz.client().get("/readyz").get_json()["notices"] == []


def test_an_inbound_denial_names_its_rule_in_the_audit_log(fed):
    kz, uz = fed["KZ"], fed["UZ"]
    write_policy(uz, 'version = 1\n[[agreement]]\nid = "x"\npeer = "KG"\ntypes = ["alert/1"]\n')
    write_policy(kz, KZ_POLICY.replace('peer = "KG"', 'peer = "UZ"'))
    assert post(kz, ["UZ"]).status_code == 202
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.code == "policy-denied"
    with uz.node.sessions() as session:
        [raw] = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.kind == "envelope-refused")
        ).all()
    refused = xb1json.loads(raw)
    assert (refused["code"], refused["rule"], refused["purpose"]) == (
        "policy-denied",
        "no-agreement",
        example_alert()["purpose"],
    )


def test_a_correction_carries_only_what_an_agreement_allows(make_federation):
    """A correction carries a whole body of the type it corrects, with its own purpose:
    KG agreed to receive alerts (and their corrections) from KZ, never referrals, and a
    correction of a referral that never came must not bring one in."""
    import uuid

    from schemas.examples import example_correction, example_referral
    from tests.test_corrections import sealed

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    write_policy(
        kg,
        'version = 1\n[[agreement]]\nid = "KG-KZ"\npeer = "KZ"\n'
        'types = ["alert/1", "correction/1"]\n',
    )
    at = int(time.time())
    referral = sealed(kz, "referral/1", example_referral(), at)
    refused = kg.client().post("/xb1/envelopes", data=referral.to_wire())
    assert refused.status_code == 403
    smuggled = example_correction(
        refers_to=str(uuid.uuid4()), refers_to_type="referral/1", body=example_referral()
    )
    answer = kg.client().post(
        "/xb1/envelopes", data=sealed(kz, "correction/1", smuggled, at + 1).to_wire()
    )
    assert answer.status_code == 403
    with kg.node.sessions() as session:
        refusals = session.scalars(select(InboundRejection)).all()
    assert [r.code for r in refusals] == ["policy-denied", "policy-denied"]
    assert "the corrected referral/1 it carries" in refusals[1].detail
    with kg.node.sessions() as session:
        [entry] = [
            xb1json.loads(raw)
            for raw in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "envelope-refused")
            )
            if b"corrected_typ" in raw
        ]
    assert (entry["rule"], entry["corrected_typ"]) == ("no-agreement", "referral/1")
    assert entry["corrected_purpose"] == example_referral()["purpose"]
    inbox = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()
    assert inbox["messages"] == []
    # A correction of an alert still comes in.
    alert = example_correction(refers_to=str(uuid.uuid4()))
    assert (
        kg.client()
        .post("/xb1/envelopes", data=sealed(kz, "correction/1", alert, at + 2).to_wire())
        .status_code
        == 200
    )


def test_a_correction_may_not_change_its_message_to_a_purpose_not_agreed(fed):
    """KZ shares alerts with KG for one purpose only; correcting an alert into another
    purpose is refused at submission, as a new alert for it would be."""
    kz = fed["KZ"]
    write_policy(
        kz,
        KZ_POLICY.replace('purposes = ["*"]', 'purposes = ["victim-protection"]').replace(
            'types = ["alert/1"]', 'types = ["alert/1", "correction/1"]'
        )
        + '\n[[agreement]]\nid = "corrections"\npeer = "KG"\n'
        'types = ["correction/1"]\npurposes = ["*"]\n',
    )
    sent = post(kz, ["KG"])
    assert sent.status_code == 202, sent.get_json()
    from schemas.examples import example_correction

    correction = example_correction(refers_to=sent.get_json()["id"])
    assert correction["body"]["purpose"] == "victim-protection"
    correction["body"]["purpose"] = "prosecution"
    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "correction/1", "body": correction},
    )
    assert answer.status_code == 403, answer.get_json()
    assert "the corrected alert/1 it carries" in answer.get_json()["message"]
    denied = [e for e in policy_entries(kz) if not e["allowed"]]
    assert [(e["typ"], e["corrected_typ"], e["corrected_purpose"]) for e in denied] == [
        ("correction/1", "alert/1", "prosecution")
    ]


def test_an_agreement_ended_stops_what_is_still_queued_and_a_resend(fed):
    """The policy is judged at submission and again before an envelope leaves: a
    message still queued when its agreement is removed does not go (rejected,
    policy-denied, recorded), an operator's retry is refused while no agreement
    allows it, and goes once one does again."""
    kz, kg = fed["KZ"], fed["KG"]
    answer = post(kz, ["KG"])
    assert answer.status_code == 202, answer.get_json()
    delivery_id = answer.get_json()["deliveries"][0]["id"]
    write_policy(kz, "version = 1\n")  # the agreement with KG is gone
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied"), outcome
    assert "no longer lets it go to KG" in outcome.detail
    with kg.node.sessions() as session:
        assert (
            session.scalars(select(AuditEntry).where(AuditEntry.kind == "envelope-accepted")).all()
            == []
        )
    [denial] = [e for e in policy_entries(kz) if e.get("at_send")]
    assert (denial["allowed"], denial["peer"], denial["rule"]) == (False, "KG", "no-agreement")
    retried = kz.client().post(f"/api/v1/deliveries/{delivery_id}/retry", headers=kz.auth())
    assert (retried.status_code, retried.get_json()["error"]) == (403, "policy-denied")
    write_policy(kz, KZ_POLICY)
    retried = kz.client().post(f"/api/v1/deliveries/{delivery_id}/retry", headers=kz.auth())
    assert retried.status_code == 200, retried.get_json()
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered"
