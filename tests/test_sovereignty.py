"""A node suspends exchange with a member or a message type on its own authority,
even while the trust list includes it; every decision is kept with who and why,
and nothing queued is lost."""

from __future__ import annotations

import time

from click.testing import CliRunner
from sqlalchemy import select

from gateway import tokens
from gateway.cli import main
from gateway.dispatcher import Dispatcher
from gateway.envelope import step1_parse_outer, step2_parse_header, verify_receipt
from gateway.models import AuditEntry, Delivery, InboundRejection, Suspension
from schemas import xb1json
from schemas.examples import example_alert
from tests.conftest import PASSPHRASE


def gateway(member, *args):
    return CliRunner().invoke(
        main,
        ["--instance", str(member.instance), *args],
        env={"GATEWAY_KEY_PASSPHRASE": PASSPHRASE},
    )


def post_alert(member, to):
    return member.client().post(
        "/api/v1/messages",
        headers=member.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": to},
    )


def test_suspending_a_member_holds_outbound_and_refuses_inbound(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    queued = post_alert(kz, ["KG"]).get_json()["id"]

    done = gateway(
        kz, "suspend", "node", "KG", "--reason", "bilateral review", "--by", "KZ central authority"
    )
    assert done.exit_code == 0 and "Suspension 1: node KG suspended" in done.output

    refused = post_alert(kz, ["KG", "UZ"])
    assert refused.status_code == 403 and refused.get_json()["error"] == "suspended"
    # The refusal is in the audit log, as every decision on the way out.
    with kz.node.sessions() as session:
        entries = [
            xb1json.loads(raw)
            for raw in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "policy").order_by(AuditEntry.seq)
            )
        ]
    last = entries[-1]
    assert (last["peer"], last["allowed"], last["rule"]) == ("KG", False, "suspension:1")
    assert last["agency"] == "kz-police" and last["typ"] == "alert/1"
    assert post_alert(kz, ["UZ"]).status_code == 202  # others are unaffected

    outcomes = {o.code for o in Dispatcher(kz.node).run_once()}
    assert outcomes == {"suspended", None}  # KG held, UZ delivered
    assert kg.posts == []

    # KG sends to KZ: refused with a signed policy-denied receipt, and recorded.
    sent_by_kg = post_alert(kg, ["KZ"]).get_json()["id"]
    [outcome] = Dispatcher(kg.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied")
    with kz.node.sessions() as session:
        row = session.scalars(select(InboundRejection)).one()
    assert (row.code, row.envelope_id, row.authenticated) == ("policy-denied", sent_by_kg, True)
    with kg.node.sessions() as session:
        delivery = session.scalars(select(Delivery)).one()
        envelope = step2_parse_header(*step1_parse_outer(delivery.envelope.wire, kg.node.limits))
    receipt = verify_receipt(
        delivery.receipt, trust=kg.node.trust().keys, now=int(time.time()), envelope=envelope
    )
    assert receipt.reason == "policy-denied"

    lifted = gateway(kz, "resume", "1", "--reason", "review concluded", "--by", "KZ CA")
    assert lifted.exit_code == 0
    [outcome] = Dispatcher(kz.node).run_once(now=int(time.time()) + 3600)
    assert outcome.state == "delivered"
    inbox = kg.client().get("/api/v1/inbox", headers=kg.auth()).get_json()["messages"]
    assert [m["envelope_id"] for m in inbox] == [queued]

    listed = gateway(kz, "suspensions", "--all").output
    assert "by KZ central authority: bilateral review" in listed
    assert "lifted" in listed and "by KZ CA: review concluded" in listed
    with kz.node.sessions() as session:
        decision = session.get(Suspension, 1)
    assert decision.decided_by == "KZ central authority" and decision.lifted_by == "KZ CA"


def test_suspending_a_message_type(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    assert (
        gateway(
            kz, "suspend", "type", "alert/1", "--reason", "schema dispute", "--by", "admin"
        ).exit_code
        == 0
    )
    answer = post_alert(kz, ["KG"])
    assert answer.status_code == 403 and "messages of type alert/1" in answer.get_json()["message"]


def test_only_another_member_can_be_suspended_over_the_admin_api(make_federation):
    """A suspension of a node that is not a member (a misspelt id) or of the node itself
    would hold nothing while the operator believes it in force: refused, and nothing
    recorded."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    with kz.node.sessions() as session:
        admin = tokens.issue(session, "kz-ops", "automation", role="admin").secret
        session.commit()
    for value, says in (
        ("KS", "not a member of trust list version 1 (members: KG)"),
        ("KZ", "is this node"),
    ):
        answer = kz.client().post(
            "/api/v1/admin/suspensions",
            headers={"Authorization": f"Bearer {admin}"},
            json={"scope": "node", "value": value, "reason": "r", "by": "me"},
        )
        assert (answer.status_code, answer.get_json()["error"]) == (422, "bad-suspension")
        assert says in answer.get_json()["message"], answer.get_json()
    with kz.node.sessions() as session:
        assert session.scalars(select(Suspension)).all() == []


def test_a_suspended_type_does_not_pass_as_a_correction_body_but_a_withdrawal_does(
    make_federation,
):
    """A correction carries a whole body of the type it corrects: a type suspended on
    either side does not go out or come in that way. A withdrawal carries no data and
    goes both ways."""
    from schemas.examples import example_correction

    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    first, second = (post_alert(kz, ["KG"]).get_json()["id"] for _ in range(2))
    Dispatcher(kz.node).run_once()

    def correct(original):
        return kz.client().post(
            "/api/v1/messages",
            headers=kz.auth(),
            json={"typ": "correction/1", "body": example_correction(refers_to=original)},
        )

    # KG suspends alerts: a correction carrying one is refused on arrival.
    assert gateway(kg, "suspend", "type", "alert/1", "--reason", "r", "--by", "me").exit_code == 0
    assert correct(first).status_code == 202
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied"), outcome
    # KZ suspends alerts too: refused at submission.
    assert gateway(kz, "suspend", "type", "alert/1", "--reason", "r", "--by", "me").exit_code == 0
    refused = correct(second)
    assert (refused.status_code, refused.get_json()["error"]) == (403, "suspended")
    withdrawal = example_correction(refers_to=second, action="withdraw", reason_code="duplicate")
    withdrawal.pop("body")
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": "correction/1", "body": withdrawal}
    )
    assert answer.status_code == 202, answer.get_json()
    assert [o.state for o in Dispatcher(kz.node).run_once()] == ["delivered"]


def test_decisions_need_a_reason_and_a_name_and_are_not_doubled(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    for args, code in (
        (("suspend", "node", "kg", "--reason", "x", "--by", "me"), "bad-suspension"),
        (("suspend", "type", "alert", "--reason", "x", "--by", "me"), "bad-suspension"),
        (("suspend", "type", "alret/1", "--reason", "x", "--by", "me"), "bad-suspension"),
        # Not a member (a misspelt KZ), or this node itself: it would hold nothing.
        (("suspend", "node", "KS", "--reason", "x", "--by", "me"), "bad-suspension"),
        (("suspend", "node", "KZ", "--reason", "x", "--by", "me"), "bad-suspension"),
        (("suspend", "node", "KG", "--reason", "x", "--by", "a\x7fb"), "who-required"),
        (("suspend", "node", "KG", "--reason", "x", "--by", "duty\u2028admin"), "who-required"),
        (("suspend", "node", "KG", "--reason", "x", "--by", "\u202eNIMDA"), "who-required"),
        (("suspend", "node", "KG", "--reason", "x", "--by", "a\x85b"), "who-required"),
        (("suspend", "node", "KG", "--reason", " ", "--by", "me"), "reason-required"),
        (("suspend", "node", "KG", "--reason", "x", "--by", ""), "who-required"),
        (("resume", "9", "--reason", "x", "--by", "me"), "not-found"),
    ):
        result = gateway(kz, *args)
        assert result.exit_code == 2 and f"error [{code}]" in result.output, result.output
    assert gateway(kz, "suspend", "node", "KG", "--reason", "x", "--by", "me").exit_code == 0
    again = gateway(kz, "suspend", "node", "KG", "--reason", "x", "--by", "me")
    assert again.exit_code == 2 and "error [already-suspended]" in again.output
    assert gateway(kz, "resume", "1", "--reason", "y", "--by", "me").exit_code == 0
    twice = gateway(kz, "resume", "1", "--reason", "y", "--by", "me")
    assert twice.exit_code == 2 and "error [already-lifted]" in twice.output
