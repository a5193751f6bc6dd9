"""Received messages go to the local agencies the routing rules name, by type, kind
and region; an agency sees only what was routed to it, minimised for its type."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import tokens
from gateway.audit import log as audit
from gateway.dispatcher import Dispatcher
from gateway.errors import ConfigError
from gateway.models import AuditEntry, Delivery, DeliveryState, InboundMessage, InboundRoute
from gateway.policy import parse
from schemas import xb1json
from schemas.examples import example_alert, example_correction, example_referral

KG_POLICY = """
version = 1

[[agreement]]
id = "KG-KZ"
peer = "KZ"
types = ["alert/1", "referral/1", "correction/1"]

[[agency]]
id = "kg-police"
type = "police"

[[agency]]
id = "kg-police-chui"
type = "police"

[[agency]]
id = "kg-shelter"
type = "ngo"

[[agency]]
id = "kg-mvd"
type = "central-authority"

[[route]]
id = "trafficking-to-police-and-shelters"
types = ["alert/1"]
kinds = ["trafficked-person"]
agencies = ["kg-police", "kg-shelter"]

[[route]]
id = "chui-region"
types = ["alert/1"]
regions = ["KG-C"]
agencies = ["kg-police-chui"]

[[route]]
id = "referrals-to-shelters"
types = ["referral/1"]
agencies = ["kg-shelter"]
"""


@pytest.fixture
def kg_routed(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    (kg.instance / "policy.toml").write_text(KG_POLICY, encoding="utf-8")
    headers = {}
    with kg.node.sessions() as session:
        for agency in ("kg-police", "kg-police-chui", "kg-shelter", "kg-mvd", "kg-other"):
            secret = tokens.issue(session, agency, "system").secret
            headers[agency] = {"Authorization": f"Bearer {secret}", "X-Justification": "intake"}
        session.commit()
    return kz, kg, headers


def send(kz, typ, body):
    answer = kz.client().post(
        "/api/v1/messages", headers=kz.auth(), json={"typ": typ, "body": body, "to": ["KG"]}
    )
    assert answer.status_code == 202, answer.get_json()
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered", outcome
    return answer.get_json()["id"]


def inbox(kg, headers, agency):
    answer = kg.client().get("/api/v1/inbox", headers=headers[agency])
    assert answer.status_code == 200
    return {m["envelope_id"]: m for m in answer.get_json()["messages"]}


def routes(kg):
    with kg.node.sessions() as session:
        return sorted((r.agency, r.rule) for r in session.scalars(select(InboundRoute)))


def test_routing_by_type_kind_and_region(kg_routed):
    kz, kg, headers = kg_routed
    trafficked = send(kz, "alert/1", example_alert())  # kind trafficked-person
    assert routes(kg) == [
        ("kg-police", "trafficking-to-police-and-shelters"),
        ("kg-shelter", "trafficking-to-police-and-shelters"),
    ]
    with kg.node.sessions() as session:
        [raw] = session.scalars(select(AuditEntry.entry).where(AuditEntry.kind == "routed"))
    entry = xb1json.loads(raw)
    # Which message: its sender's too, as envelope ids are unique per sender only.
    assert (entry["id"], entry["sender"]) == (trafficked, "KZ")
    assert sorted(entry["to"]) == [
        "kg-police:trafficking-to-police-and-shelters",
        "kg-shelter:trafficking-to-police-and-shelters",
    ]
    missing = example_alert(kind="missing-person")
    missing["subjects"] = [s for s in missing["subjects"] if s["category"] == "victim"]
    missing["locations"] = [{"country": "KG", "subdivision": "KG-C", "role": "last-seen"}]
    in_chui = send(kz, "alert/1", missing)
    no_route = copy.deepcopy(missing)
    no_route["locations"][0]["subdivision"] = "KG-O"
    unrouted = send(kz, "alert/1", no_route)

    assert set(inbox(kg, headers, "kg-police")) == {trafficked}
    assert set(inbox(kg, headers, "kg-police-chui")) == {in_chui}
    assert set(inbox(kg, headers, "kg-shelter")) == {trafficked}
    assert set(inbox(kg, headers, "kg-mvd")) == {unrouted}  # the default: central authority
    assert inbox(kg, headers, "kg-other") == {}  # deny by default
    answer = kg.client().get("/api/v1/inbox/1", headers=headers["kg-mvd"])
    assert answer.status_code == 404  # routed elsewhere: as if it did not exist


def test_a_correction_goes_where_its_original_went_and_not_to_the_default(kg_routed):
    """No route names corrections; they follow the original's agencies. The default
    rule (the central authority, so that nothing goes unseen) is not added on top."""
    kz, kg, headers = kg_routed
    original = send(kz, "alert/1", example_alert())  # to the police and the shelter
    correction = send(kz, "correction/1", example_correction(refers_to=original))
    with kg.node.sessions() as session:
        rows = session.scalars(
            select(InboundRoute)
            .join(InboundMessage, InboundMessage.id == InboundRoute.inbound_id)
            .where(InboundMessage.envelope_id == correction)
        ).all()
    assert sorted((r.agency, r.rule) for r in rows) == [
        ("kg-police", "correction-of-original"),
        ("kg-shelter", "correction-of-original"),
    ]
    assert correction not in inbox(kg, headers, "kg-mvd")


def test_an_ngo_reads_without_suspects(kg_routed):
    kz, kg, headers = kg_routed
    alert_id = send(kz, "alert/1", example_alert())
    police = inbox(kg, headers, "kg-police")[alert_id]["body"]
    shelter = inbox(kg, headers, "kg-shelter")[alert_id]
    assert {s["category"] for s in police["subjects"]} == {"victim", "suspect"}
    assert [s["category"] for s in shelter["body"]["subjects"]] == ["victim"]
    assert shelter["minimised"] == ["ngo-no-suspect-data"]


def test_a_referral_goes_to_the_shelter_only(kg_routed):
    kz, kg, headers = kg_routed
    referral = example_referral()
    referral_id = send(kz, "referral/1", referral)
    assert routes(kg) == [("kg-shelter", "referrals-to-shelters")]
    assert set(inbox(kg, headers, "kg-shelter")) == {referral_id}
    assert inbox(kg, headers, "kg-police") == {}


CENTRAL = '[[agency]]\nid = "kg-mvd"\ntype = "central-authority"\n'
ROUTE_MISTAKES = [
    ('[[route]]\nid = "r"\ntypes = ["alert/1"]\nagencies = ["kg-police"]\n', "[[agency]]"),
    (
        '[[agency]]\nid = "kg-police"\ntype = "police"\n'
        + CENTRAL
        + '[[route]]\nid = "r"\ntypes = ["alert/1"]\nagencies = ["kg-ngo"]\n',
        "not listed as [[agency]]",
    ),
    ('[[agency]]\nid = "kg-police"\ntype = "army"\n', "type must be one of"),
    (
        '[[agency]]\nid = "kg-police"\ntype = "police"\n'
        + CENTRAL
        + '[[route]]\nid = "r"\ntypes = ["alert/1"]\nregions = ["Chui"]\n'
        + 'agencies = ["kg-police"]\n',
        "ISO 3166-2",
    ),
    ('[[agency]]\nid = "a"\ntype = "police"\n[[agency]]\nid = "a"\ntype = "ngo"\n', "twice"),
    ('[[agency]]\nid = "kg-police"\ntype = "police"\n', 'type = "central-authority"'),
]


@pytest.mark.parametrize(("text", "message"), ROUTE_MISTAKES)
def test_routing_mistakes_are_named(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse("version = 1\n" + text, Path("policy.toml"))


def test_a_correction_that_came_first_also_goes_where_its_original_goes(kg_routed):
    """The original's delivery is retried while its correction gets through: the
    correction goes to the default until the original arrives, then to its agencies."""
    kz, kg, headers = kg_routed
    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
    )
    original = answer.get_json()
    delivery_id = original["deliveries"][0]["id"]
    with kz.node.sessions() as session:
        delivery = session.get(Delivery, delivery_id)
        delivery.state, delivery.next_attempt_at = DeliveryState.RETRYING, 2**40
        session.commit()
    correction = send(kz, "correction/1", example_correction(refers_to=original["id"]))
    assert set(inbox(kg, headers, "kg-mvd")) == {correction}
    assert inbox(kg, headers, "kg-police") == {}
    with kz.node.sessions() as session:
        session.get(Delivery, delivery_id).next_attempt_at = 0
        session.commit()
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "delivered", outcome
    for agency in ("kg-police", "kg-shelter"):
        seen = inbox(kg, headers, agency)
        assert set(seen) == {original["id"], correction}
        assert seen[original["id"]]["state"] == "corrected"


def test_a_correction_and_its_original_in_one_group_commit_go_to_its_agencies(kg_routed):
    """Envelopes accepted together are stored in one transaction: the correction,
    first in the group, still finds its original's routes."""
    from gateway import inbox as inbox_module
    from gateway.envelope import authenticate, decrypt_and_validate, make_receipt
    from tests.test_corrections import correcting, sealed

    kz, kg, headers = kg_routed
    node = kg.node
    at = int(time.time())

    def accepting(envelope):
        raw = envelope.to_wire()
        checked = authenticate(raw, trust=node.trust().keys, now=at, limits=node.limits)
        opened = decrypt_and_validate(checked, node.id, node.keys.encryption_keys)
        rule = inbox_module._local_policy(node, opened, at, {})
        receipt = make_receipt(checked, receiver=node.id, signing_key=node.signing_pair(at), at=at)
        return inbox_module._Accepting(node, raw, opened, receipt, at, rule)

    original = sealed(kz, "alert/1", example_alert(), at)
    fix = sealed(kz, "correction/1", correcting(original.header.id, "2001-08-03"), at + 1)
    with node.engine.connect() as connection, connection.begin():
        audit.lock(connection)
        inbox_module._store_accepted(connection, [accepting(fix), accepting(original)])
    for agency in ("kg-police", "kg-shelter"):
        assert set(inbox(kg, headers, agency)) == {original.header.id, fix.header.id}
    assert inbox(kg, headers, "kg-mvd") == {}
