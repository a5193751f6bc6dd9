"""H2 data goes to a third state only with the originator's signed grant: the node
recognises the data itself (names in any spelling, documents), not a declaration."""

from __future__ import annotations

import copy
import time

from sqlalchemy import select

from gateway import purge
from gateway.dispatcher import Dispatcher
from gateway.models import AuditEntry, H2Identifier, InboundMessage
from gateway.onward import identifier_keys
from schemas import xb1json
from schemas.examples import example_alert, example_alert_uzbek_latin, example_correction


def post(member, typ, body, to, expect=202):
    answer = member.client().post(
        "/api/v1/messages", headers=member.auth(), json={"typ": typ, "body": body, "to": to}
    )
    assert answer.status_code == expect, answer.get_json()
    return answer.get_json()


def deliver(member):
    outcomes = Dispatcher(member.node).run_once()
    assert {o.state for o in outcomes} == {"delivered"}, outcomes


def kg_alert_naming(victim):
    """A KG alert of its own that names the same victim (H0: KG puts no restriction)."""
    body = example_alert_uzbek_latin()
    body["subjects"] = [victim]
    body["handling"] = {"code": "H0"}
    body["purpose"] = "victim-protection"
    return body


def grant_body(source, to_states, purposes, valid_for=86_400):
    now = int(time.time())
    body = example_alert()
    return {
        "refers_to": source,
        "to_states": to_states,
        "purposes": purposes,
        "granted_at": now,
        "valid_until": now + valid_for,
        "granted_by": "Prosecutor General's Office of Kazakhstan, A. Seitkali",
        "purpose": "victim-return-and-assistance",
        "legal_basis": body["legal_basis"],
        "handling": {"code": "H0"},
        "tlp": "AMBER",
        "urgency": "urgent",
        "retention_days": 365,
    }


def test_h2_data_needs_the_originators_grant_to_reach_a_third_state(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    assert original["handling"]["code"] == "H2"
    source = post(kz, "alert/1", original, ["KG"])["id"]
    deliver(kz)
    victim = copy.deepcopy(original["subjects"][0])

    refused = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)
    assert refused["error"] == "policy-denied"
    assert refused["details"] == {"rules": ["h2-no-grant"], "sources": [source]}
    assert "KZ" in refused["message"] and "UZ" in refused["message"]
    # The same data back to its originator needs no grant.
    post(kg, "alert/1", kg_alert_naming(victim), ["KZ"])

    # Another spelling of the name, with no Cyrillic original, is the same person.
    respelled = copy.deepcopy(victim)
    respelled["names"] = [
        {"original": "Aygerim Nurlanova", "script": "Latn", "latin": "Aygerim Nurlanova"}
    ]
    post(kg, "alert/1", kg_alert_naming(respelled), ["UZ"], expect=403)

    # KZ grants onward dissemination to UZ for victim protection.
    grant = post(kz, "grant/1", grant_body(source, ["UZ"], ["victim-protection"]), ["KG"])
    deliver(kz)
    sent = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"])
    assert sent["deliveries"][0]["recipient"] == "UZ"
    with kg.node.sessions() as session:
        rules = [
            xb1json.loads(raw)["rule"]
            for raw in session.scalars(select(AuditEntry.entry).where(AuditEntry.kind == "policy"))
        ]
    assert rules[-1] == f"grant:{grant['id']}" and "h2-no-grant" in rules

    # Not for another purpose, and not once withdrawn.
    other = kg_alert_naming(victim)
    other["purpose"] = "prosecution"
    post(kg, "alert/1", other, ["UZ"], expect=403)
    withdrawal = example_correction(
        refers_to=grant["id"],
        refers_to_type="grant/1",
        action="withdraw",
        reason_code="case-closed",
    )
    withdrawal.pop("body")
    post(kz, "correction/1", withdrawal, ["KG"])
    deliver(kz)
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)


def test_a_grant_from_someone_else_or_expired_does_not_count(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg, uz = fed["KZ"], fed["KG"], fed["UZ"]
    source = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    victim = example_alert()["subjects"][0]
    # UZ cannot grant what KZ owns; KZ's expired grant does not count either.
    post(uz, "grant/1", grant_body(source, ["UZ"], ["victim-protection"]), ["KG"])
    deliver(uz)
    expired = grant_body(source, ["UZ"], ["victim-protection"])
    expired["granted_at"] -= 10 * 86_400
    expired["valid_until"] = expired["granted_at"] + 86_400
    post(kz, "grant/1", expired, ["KG"])
    deliver(kz)
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)


def test_data_without_h2_or_after_purge_is_not_restricted(make_federation):
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    h0 = example_alert(handling={"code": "H0"})
    post(kz, "alert/1", h0, ["KG"])
    deliver(kz)
    post(kg, "alert/1", kg_alert_naming(h0["subjects"][0]), ["UZ"])

    post(kz, "alert/1", example_alert(), ["KG"])
    deliver(kz)
    victim = example_alert()["subjects"][0]
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)
    with kg.node.sessions() as session:
        assert session.scalars(select(H2Identifier)).first() is not None
        purge.run(session, kg.node.policy(), now=int(time.time()) + 4000 * 86_400, by="test")
        assert session.scalars(select(H2Identifier)).first() is None
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"])


def test_identifier_keys_cover_names_documents_phones_and_accounts():
    person = {
        "names": [{"original": "Юлдашев", "script": "Cyrl", "latin": "Yuldashev", "lang": "uz"}]
    }
    document = {"type": "P", "number": "N 123-456", "issuing_country": "UZ"}
    same_document = {"type": "P", "number": "n123456", "issuing_country": "UZ"}
    phone = {"type": "phone", "value": "+998901234567"}
    account = {"type": "bank", "iban": "KZ86125KZT5004100100"}
    assert identifier_keys({"a": [person]}) & identifier_keys(
        {"b": {"names": [{"original": "Juldaschew", "script": "Latn", "latin": "Juldaschew"}]}}
    )
    assert identifier_keys(document) == identifier_keys(same_document)
    assert identifier_keys(document) != identifier_keys({**document, "issuing_country": "KZ"})
    assert identifier_keys(phone) and identifier_keys(account)
    assert identifier_keys({"title": "nothing identifying"}) == set()


def test_h2_data_is_indexed_off_the_receive_path(make_federation):
    """Accepting an H2 message records nothing; the next check (or the dispatcher)
    records its identifiers once."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    post(kz, "alert/1", example_alert(), ["KG"])
    deliver(kz)
    with kg.node.sessions() as session:
        assert session.scalars(select(H2Identifier)).first() is None
        assert session.scalars(select(InboundMessage.h2_indexed_at)).one() is None
    Dispatcher(kg.node)._index_h2()
    with kg.node.sessions() as session:
        assert session.scalars(select(InboundMessage.h2_indexed_at)).one() is not None
        indexed = len(session.scalars(select(H2Identifier)).all())
    assert indexed > 0
    post(kg, "alert/1", kg_alert_naming(example_alert()["subjects"][0]), ["UZ"], expect=403)
    with kg.node.sessions() as session:
        assert len(session.scalars(select(H2Identifier)).all()) == indexed  # not twice
