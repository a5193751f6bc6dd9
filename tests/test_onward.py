"""H2 data goes to a third state only with the originator's signed grant: the node
recognises the data itself (names in any spelling, documents), not a declaration."""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time

from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import sessionmaker

from gateway import db, onward, outbox, purge
from gateway.dispatcher import Dispatcher
from gateway.models import AuditEntry, H2Identifier, InboundMessage
from gateway.onward import identifier_keys
from schemas import xb1json
from schemas.examples import example_alert, example_alert_uzbek_latin, example_correction
from schemas.names import KEY_NUMBER
from tests.test_onward_identifiers import meets


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


def withdraw_grant(member, grant_id):
    """``member`` withdraws the grant it sent to KG."""
    withdrawal = example_correction(
        refers_to=grant_id, refers_to_type="grant/1", action="withdraw", reason_code="case-closed"
    )
    withdrawal.pop("body")
    post(member, "correction/1", withdrawal, ["KG"])


def due(member, delivery_id, at):
    """Set when ``member``'s delivery is next due (2**40: held back; 0: now)."""
    from gateway.models import Delivery

    with member.node.sessions() as session:
        session.get(Delivery, delivery_id).next_attempt_at = at
        session.commit()


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
    assert refused["details"] == {
        "rules": ["h2-no-grant"],
        "sources": [source],
        "recipients": ["UZ"],
    }
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
    withdraw_grant(kz, grant["id"])
    deliver(kz)
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)


def test_h2_data_shortened_or_told_in_words_still_needs_the_grant(make_federation):
    """The victim's name shortened to an initial, declined in the summary, her passport
    number or the recruiter's Telegram account written in the summary of an alert of
    KG's own: KG still needs KZ's grant."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    passport = {"type": "P", "number": "N08154711", "issuing_country": "KZ"}
    original["subjects"][0]["documents"] = [passport]
    source = post(kz, "alert/1", original, ["KG"])["id"]
    deliver(kz)
    someone = copy.deepcopy(example_alert_uzbek_latin()["subjects"][0])
    post(kg, "alert/1", kg_alert_naming(someone), ["UZ"])  # nothing of KZ's: sent
    shortened = copy.deepcopy(someone)
    shortened["names"] = [{"original": "A. Nurlanova", "script": "Latn", "latin": "A. Nurlanova"}]
    bodies = [kg_alert_naming(shortened)]
    for summary in (
        "The adverts ran on t.me/rabota_dubai_example until May.",
        "Консульство приняло Айгерим Нурланову 12 мая.",
        "Паспорт № N 08154711 изъят у работодателя.",
    ):
        bodies.append(kg_alert_naming(someone))
        bodies[-1]["summary"] = summary
    for body in bodies:
        refused = post(kg, "alert/1", body, ["UZ"], expect=403)
        assert refused["details"]["sources"] == [source], refused


def test_a_refusal_touching_many_h2_messages_says_a_few_and_lists_them_all(
    make_federation, monkeypatch
):
    monkeypatch.setattr(outbox, "DENIALS_SAID", 2)
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    sources = sorted(post(kz, "alert/1", original, ["KG"])["id"] for _ in range(4))
    deliver(kz)
    victim = copy.deepcopy(original["subjects"][0])
    refused = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)
    assert refused["details"] == {
        "rules": ["h2-no-grant"],
        "sources": sources,
        "recipients": ["UZ"],
    }
    assert refused["message"].count("without KZ's grant") == 2
    assert refused["message"].endswith(
        "; and 2 more denials (details.sources names each H2 message concerned that "
        "your agency reads, details.recipients every recipient refused)"
    )
    with kg.node.sessions() as session:
        recorded = [
            json.loads(entry)
            for entry in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "policy")
            )
        ]
    assert sorted(e["source"] for e in recorded if e.get("rule") == "h2-no-grant") == sources


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
    # Nor a grant dated ahead: it covers the period it names, from when it was made.
    ahead = grant_body(source, ["UZ"], ["victim-protection"])
    ahead["granted_at"] += 10 * 86_400
    ahead["valid_until"] = ahead["granted_at"] + 10 * 86_400
    post(kz, "grant/1", ahead, ["KG"])
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
    # Text is compared with H2 names, not with H2 text: no common phrase meets.
    assert not identifier_keys({"title": "nothing identifying"}) & identifier_keys(
        {"summary": "This is nothing identifying at all"}, outgoing=True
    )


def test_identifier_keys_leave_no_gap_for_accounts_channels_and_names_as_written():
    """Every account number (with or without its institution, crypto and mobile money
    too), a phone number used for a messenger, and a name in its original script
    whose Latin form was shortened."""
    bank = {"type": "bank", "number": "40702810900000000001", "institution": "Halyk Bank"}
    assert meets({"a": [bank]}, {"a": [{"type": "bank", "number": "4070 2810 9000 0000 0001"}]})
    for account in (
        {"type": "crypto", "number": "TQ9xYzAbCdEf1234567890", "network": "tron"},
        {"type": "mobile-money", "number": "+77000000001"},
    ):
        assert identifier_keys({"accounts": [account]}), account
    phone = {"type": "phone", "value": "+77000000001"}
    messenger = {"type": "messenger", "platform": "whatsapp", "value": "+77000000001"}
    assert identifier_keys({"c": [phone]}) == identifier_keys({"c": [messenger]})
    full = {
        "names": [{"original": "Айгерим Нурланова", "latin": "Aigerim Nurlanova", "lang": "kk"}]
    }
    short = {"names": [{"original": "Айгерим Нурланова", "latin": "A. Nurlanova", "lang": "kk"}]}
    assert meets(full, short) and meets(short, full)


def test_phones_documents_and_accounts_as_people_write_them_meet():
    """The same phone number with spaces, brackets, dashes or without "+"; a mobile
    money wallet that is that number; a document number with look-alike Cyrillic
    letters, a "No" sign, an en dash or full-width digits; an account's number given
    beside its IBAN or alone: each meets the form the H2 message recorded."""

    def meet(a, b):
        return meets({"x": [a]}, {"x": [b]}) and meets({"x": [b]}, {"x": [a]})

    phone = {"type": "phone", "value": "+77000000000"}
    for written in ("+7 700 000 00 00", "77000000000", "+7 (700) 000-00-00"):
        assert meet(phone, {"type": "messenger", "platform": "whatsapp", "value": written})
    assert meet(phone, {"type": "mobile-money", "number": "+7 700 000 00 00"})
    passport = {"type": "P", "number": "AB1234567", "issuing_country": "KZ"}
    for written in ("АВ1234567", "№AB1234567", "AB–1234567", "ＡＢ１２３４５６７"):
        assert meet(passport, {**passport, "number": written}), written
    assert not meet(passport, {**passport, "number": "AB1234568"})
    # Letters of other scripts are compared, not dropped: two series of birth
    # certificates are two documents.
    certificate = {"type": "birth-certificate", "number": "II-АГ 123456", "issuing_country": "KZ"}
    assert not meet(certificate, {**certificate, "number": "II-АБ 123456"})
    assert not meet({**certificate, "number": "ЖД123456"}, {**certificate, "number": "123456"})
    # Only a phone or messenger value, or a mobile-money wallet, is read as a phone.
    assert not meet(phone, {"type": "bank", "number": "77000000000"})
    assert not meet(phone, {"type": "social", "value": "77000000000"})
    bank = {"type": "bank", "iban": "KZ86125KZT5004100100", "number": "5004100100"}
    assert meet(bank, {"type": "bank", "number": "5004100100"})
    assert not meet(phone, {"type": "messenger", "value": "@handle"})


def test_a_name_written_with_invisible_characters_has_the_same_identifiers():
    """Originator control cannot be dodged by writing an H2 person's name with a
    zero-width space, soft hyphen or other invisible character inside."""
    latin = "A. Nurlanova"  # a shortened Latin form: the original must carry the match
    plain = {"names": [{"original": "Айгерим Нурланова", "latin": latin, "lang": "kk"}]}
    for hidden in ("Ай\u200bгерим Нурланова", "Айге\u00adрим Нурланова", "\ufeffАйгерим Нурланова"):
        masked = {"names": [{"original": hidden, "latin": latin, "lang": "kk"}]}
        assert identifier_keys(masked) == identifier_keys(plain), hidden


def test_the_dispatcher_records_h2_identifiers_at_every_round(make_federation):
    """Not only every ``checkpoint_interval``: an H2 message received after the
    dispatcher's first round is recorded by one of its next rounds, so an agency's
    next submission finds little left to record in its own transaction."""
    fed = make_federation(("KZ", "KG"), settings={"checkpoint_interval": 3600})
    kz, kg = fed["KZ"], fed["KG"]
    dispatcher = Dispatcher(kg.node)
    rounds: list[int] = []
    index_h2 = dispatcher._index_h2
    stop = threading.Event()  # set by the test once it has seen what it waits for

    def counted() -> None:
        if stop.is_set():
            raise _Stopped
        rounds.append(1)
        index_h2()

    def running_until_stopped() -> None:
        with contextlib.suppress(_Stopped):
            dispatcher.run(stop_after=20)  # stopped sooner, once the test has seen it

    dispatcher._index_h2 = counted  # type: ignore[method-assign]
    running = threading.Thread(target=running_until_stopped)
    running.start()
    try:
        deadline = time.monotonic() + 10
        while not rounds:
            assert time.monotonic() < deadline, "the dispatcher did not start"
            time.sleep(0.01)
        first_round = len(rounds)
        post(kz, "alert/1", example_alert(), ["KG"])
        deliver(kz)
        indexed = None
        while indexed is None and running.is_alive():
            with kg.node.sessions() as session:
                indexed = session.scalars(select(InboundMessage.h2_indexed_at)).one()
            time.sleep(0.05)
    finally:
        stop.set()
        running.join(timeout=30)
    assert indexed is not None
    assert len(rounds) > first_round


class _Stopped(Exception):
    """Raised in a running dispatcher's round to stop it."""


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


def test_a_backlog_is_recorded_a_batch_per_transaction(make_federation, monkeypatch):
    """After an upgrade every held body waits to be recorded again: the dispatcher (and
    the agency API, before a submission) records them a batch per committed
    transaction, so no long transaction holds their rows or the database."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    for _ in range(3):
        post(kz, "alert/1", example_alert(), ["KG"])
    deliver(kz)
    monkeypatch.setattr(onward, "_BATCH", 2)
    commits: list[int] = []
    event.listen(kg.node.engine, "commit", lambda connection: commits.append(1))
    assert onward.index_pending(kg.node.sessions, int(time.time()), batches=1) == 2
    assert onward.index_pending(kg.node.sessions, int(time.time())) == 1
    assert len(commits) == 2  # a batch of 2, then one of 1
    with kg.node.sessions() as session:
        assert not session.scalars(
            select(InboundMessage.id).where(InboundMessage.h2_indexed_at.is_(None))
        ).all()
        assert session.scalars(select(H2Identifier)).first() is not None
    assert onward.index_pending(kg.node.sessions, int(time.time())) == 0


def test_a_correction_of_a_recorded_message_has_its_identifiers_recorded_again(
    make_federation,
):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    Dispatcher(kg.node)._index_h2()
    renamed = {"original": "Aliya Serikova", "script": "Latn", "latin": "Aliya Serikova"}
    correction = example_correction(refers_to=original)
    correction["body"]["subjects"][0]["names"] = [renamed]
    post(kz, "correction/1", correction, ["KG"])
    deliver(kz)
    Dispatcher(kg.node)._index_h2()
    with kg.node.sessions() as session:
        original_id = session.scalars(
            select(InboundMessage.id).where(InboundMessage.envelope_id == original)
        ).one()
        of_original = set(
            session.scalars(select(H2Identifier.key).where(H2Identifier.inbound_id == original_id))
        )
    assert identifier_keys({"names": [renamed]}) <= of_original
    assert not identifier_keys({"names": example_alert()["subjects"][0]["names"]}) & of_original


def test_a_correction_while_identifiers_are_recorded_is_not_overwritten(
    make_federation, monkeypatch
):
    """The dispatcher reads an H2 message to record its identifiers; a correction of it
    is applied meanwhile. The old body's identifiers are not recorded over it, and the
    corrected body's are recorded on the next round."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    deliver(kz)
    renamed = {"original": "Aliya Serikova", "script": "Latn", "latin": "Aliya Serikova"}
    real = onward.identifier_keys

    def corrected_meanwhile(body):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(onward, "identifier_keys", real)
        correction = example_correction(refers_to=original)
        correction["body"]["subjects"][0]["names"] = [renamed]
        post(kz, "correction/1", correction, ["KG"])
        deliver(kz)
        return real(body)

    monkeypatch.setattr(onward, "identifier_keys", corrected_meanwhile)
    old_names = real({"names": example_alert()["subjects"][0]["names"]})
    with kg.node.sessions() as session:  # the check's own catch-up, without row locks
        onward.catch_up(session, int(time.time()))
        session.commit()
    with kg.node.sessions() as session:
        # Nothing stale (the correction that arrived meanwhile may be recorded already).
        assert not old_names & set(session.scalars(select(H2Identifier.key)))
        row = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == original)
        ).one()
        assert (row.h2_indexed_at, row.h2_keys_version) == (None, 0)  # to record again
        original_id = row.id
    Dispatcher(kg.node)._index_h2()
    with kg.node.sessions() as session:
        recorded = set(session.scalars(select(H2Identifier.key)))
        of_original = set(
            session.scalars(select(H2Identifier.key).where(H2Identifier.inbound_id == original_id))
        )
    assert real({"names": [renamed]}) <= of_original
    assert not old_names & recorded


def test_a_batch_records_each_message_by_the_state_it_was_read_in(databases, monkeypatch):
    """One batch of rows read in different states (with and without a correction's
    ``state_by``, without a body, with identifiers of an older version), some changed
    between the read and the writes: each row is marked, and its identifiers replaced,
    only if it is still as it was read."""
    engine = db.make_engine(databases.new_url("batch"))
    try:
        db.upgrade(engine)
        body = example_alert()
        body["handling"] = {**body["handling"], "code": "H2"}
        keys = onward.identifier_keys(body)
        stale = {n: b"old" + bytes([n]) * 29 for n in (1, 2, 3)}
        read_as = {
            1: (True, None),
            2: (True, "c-1"),
            3: (True, None),
            4: (False, None),
            5: (True, "c-1"),
            6: (True, None),
            7: (True, "c-2"),
            8: (True, None),
        }
        with engine.begin() as connection:
            for n, (has_body, state_by) in read_as.items():
                connection.execute(
                    insert(InboundMessage).values(
                        id=n,
                        sender="KZ",
                        envelope_id=f"id-{n}",
                        typ="alert/1",
                        ph=b"\0" * 32,
                        ch=b"\0" * 32,
                        iat=1,
                        exp=2,
                        wire=b"",
                        receipt=b"",
                        received_at=1,
                        body_json=json.dumps(body) if has_body else None,
                        state_by=state_by,
                    )
                )
            for n, key in stale.items():
                connection.execute(
                    insert(H2Identifier).values(inbound_id=n, originator="KZ", key=key)
                )
        real, changed = onward.identifier_keys, []

        def changed_meanwhile(body):  # between the read and the writes
            if not changed:
                changed.append(True)
                with engine.begin() as connection:
                    rows = update(InboundMessage).where
                    connection.execute(rows(InboundMessage.id == 3).values(state_by="c-9"))
                    connection.execute(rows(InboundMessage.id == 5).values(body_json=None))
                    connection.execute(rows(InboundMessage.id == 7).values(state_by=None))
            return real(body)

        monkeypatch.setattr(onward, "identifier_keys", changed_meanwhile)
        # The check's own catch-up (no row locks: on PostgreSQL index_pending's would
        # make the changes above wait for the batch instead).
        with sessionmaker(engine)() as session:
            assert onward._catch_up_batch(session, 7, 0) == (8, 8)
            session.commit()
        with engine.connect() as connection:
            versions = dict(
                connection.execute(select(InboundMessage.id, InboundMessage.h2_keys_version)).all()
            )
            recorded: dict[int, set[bytes]] = {}
            for n, key in connection.execute(select(H2Identifier.inbound_id, H2Identifier.key)):
                recorded.setdefault(n, set()).add(bytes(key))
        done = KEY_NUMBER
        assert versions == {1: done, 2: done, 3: 0, 4: done, 5: 0, 6: done, 7: 0, 8: done}
        # 3 is left for the next round, its old identifier with it (replaced then).
        assert recorded == {1: keys, 2: keys, 3: {stale[3]}, 6: keys, 8: keys}
    finally:
        engine.dispose()


def test_a_correction_carrying_h2_data_is_h2_data_whatever_its_own_code(make_federation):
    """A correction marked H0 that carries an H2 body, waiting at KG for its original
    (still on its way): KG may not pass that body's data on to a third state."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    assert original["handling"]["code"] == "H2"
    sent = post(kz, "alert/1", original, ["KG"])
    due(kz, sent["deliveries"][0]["id"], 2**40)
    fix = example_correction(refers_to=sent["id"], handling={"code": "H0"})
    assert fix["body"]["handling"]["code"] == "H2"
    fixed = post(kz, "correction/1", fix, ["KG"])
    deliver(kz)
    with kg.node.sessions() as session:
        assert [r.typ for r in session.scalars(select(InboundMessage))] == ["correction/1"]
    # KZ's data protection report counts it as the H2 disclosure it is.
    with kz.node.sessions() as session:
        entries = [json.loads(e) for e in session.scalars(select(AuditEntry.entry))]
    [submitted] = [
        e for e in entries if e["kind"] == "message-submitted" and e["id"] == fixed["id"]
    ]
    assert submitted["handling"] == "H2"
    victim = copy.deepcopy(original["subjects"][0])
    refused = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)
    assert refused["details"]["rules"] == ["h2-no-grant"], refused


def test_a_grant_must_cover_the_purpose_of_the_body_a_correction_carries(make_federation):
    """KG may pass KZ's H2 data on to UZ for victim protection (KZ's grant); a
    correction whose own purpose is victim protection but whose corrected body is for
    prosecution is not covered."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    source = post(kz, "alert/1", original, ["KG"])["id"]
    deliver(kz)
    post(kz, "grant/1", grant_body(source, ["UZ"], ["victim-protection"]), ["KG"])
    deliver(kz)
    victim = copy.deepcopy(original["subjects"][0])
    own = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"])
    corrected = kg_alert_naming(victim)
    corrected["purpose"] = "prosecution"
    fix = example_correction(
        refers_to=own["id"], purpose="victim-protection", handling={"code": "H0"}, body=corrected
    )
    refused = post(kg, "correction/1", fix, ["UZ"], expect=403)
    assert refused["details"]["rules"] == ["h2-no-grant"], refused
    assert "victim-protection and prosecution" in refused["message"]
    fix["body"]["purpose"] = "victim-protection"
    post(kg, "correction/1", fix, ["UZ"])


def test_h2_data_that_came_after_a_message_was_submitted_does_not_stop_it(make_federation):
    """KG's own alert naming a person waits in KG's queue; meanwhile KZ's H2 alert
    about the same person arrives. KG's alert cannot carry data that came after it:
    it still goes (the check before sending counts H2 data received by submission)."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    victim = copy.deepcopy(original["subjects"][0])
    own = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"])
    delivery_id = own["deliveries"][0]["id"]
    due(kg, delivery_id, 2**40)
    time.sleep(1.1)  # received in a later second than KG's alert was submitted
    post(kz, "alert/1", original, ["KG"])
    deliver(kz)
    due(kg, delivery_id, 0)
    [outcome] = Dispatcher(kg.node).run_once()
    assert outcome.state == "delivered", outcome
    # A new message with the same data is refused, as before.
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)


ROUTED_POLICY = """version = 1
[[agreement]]
id = "KG-KZ"
peer = "KZ"
types = ["alert/1"]
purposes = ["*"]
[[agreement]]
id = "KG-UZ"
peer = "UZ"
types = ["alert/1"]
purposes = ["*"]
[[agency]]
id = "kg-mvd"
type = "central-authority"
[[agency]]
id = "kg-police"
type = "police"
[[route]]
id = "referrals-only"
types = ["referral/1"]
agencies = ["kg-police"]
"""


def test_an_h2_refusal_names_only_messages_the_agency_reads(make_federation):
    """KZ's H2 alert is routed to KG's central authority only. An agency it was not
    routed to is refused all the same, but not told which message of which member
    (it could probe for them); the central authority, which reads it, is."""
    from gateway.tokens import issue

    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    (kg.instance / "policy.toml").write_text(ROUTED_POLICY, encoding="utf-8")
    original = example_alert()
    source = post(kz, "alert/1", original, ["KG"])["id"]
    deliver(kz)
    victim = copy.deepcopy(original["subjects"][0])
    refused = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)  # kg-police
    assert refused["details"] == {
        "rules": ["h2-no-grant"],
        "sources": [],
        "recipients": ["UZ"],
        "unnamed_sources": 1,
    }
    assert source not in refused["message"] and "KZ" not in refused["message"]
    with kg.node.sessions() as session:
        mvd = issue(session, "kg-mvd", "central authority").secret
        session.commit()
        denials = [
            xb1json.loads(raw)
            for raw in session.scalars(select(AuditEntry.entry).where(AuditEntry.kind == "policy"))
        ]
    assert any(e.get("source") == source and not e["allowed"] for e in denials)  # all recorded
    answer = kg.client().post(
        "/api/v1/messages",
        headers={"Authorization": f"Bearer {mvd}"},
        json={"typ": "alert/1", "body": kg_alert_naming(victim), "to": ["UZ"]},
    )
    assert answer.status_code == 403
    assert answer.get_json()["details"]["sources"] == [source]
    # Held in quarantine, it is not read in the inbox: not named either.
    with kg.node.sessions() as session:
        held = session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == source)
        ).one()
        held.quarantined_at = int(time.time())
        session.commit()
    answer = kg.client().post(
        "/api/v1/messages",
        headers={"Authorization": f"Bearer {mvd}"},
        json={"typ": "alert/1", "body": kg_alert_naming(victim), "to": ["UZ"]},
    )
    assert answer.get_json()["details"]["sources"] == [], answer.get_json()


def test_an_h2_refusal_does_not_name_a_correction_of_a_type_the_role_does_not_read(
    make_federation,
):
    """An officer reads corrections, but not case requests, nor the corrections of
    them: refused for naming the person of KZ's H2 case request, it is told neither
    message (the correction's id would tell it that the request exists)."""
    from gateway.tokens import issue
    from gateway.users import add
    from schemas.examples import example_case_request

    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    request = example_case_request(handling={"code": "H2"})
    sent = post(kz, "case-request/1", request, ["KG"])
    corrected = copy.deepcopy(request)
    corrected["deadline"] = request["deadline"] + 86_400
    fix = example_correction(
        refers_to=sent["id"],
        refers_to_type="case-request/1",
        purpose=request["purpose"],
        handling={"code": "H0"},
        body=corrected,
    )
    post(kz, "correction/1", fix, ["KG"])
    deliver(kz)
    with kg.node.sessions() as session:
        officer = add(
            session, "o.fficer", full_name="O. Fficer", agency=kg.agency, role="officer", by="t"
        )
        secret = issue(session, kg.agency, "test", user=officer).secret
        session.commit()
    alert = example_alert_uzbek_latin()
    alert["subjects"][0]["names"] = copy.deepcopy(request["subjects"][0]["names"])
    alert["handling"] = {"code": "H0"}
    answer = kg.client().post(
        "/api/v1/messages",
        headers={"Authorization": f"Bearer {secret}"},
        json={"typ": "alert/1", "body": alert, "to": ["UZ"]},
    )
    assert answer.status_code == 403, answer.get_json()
    details = answer.get_json()["details"]
    assert (details["sources"], details["unnamed_sources"]) == ([], 2), details


def test_a_grant_withdrawn_while_a_message_waits_stops_it(make_federation):
    """KG's alert naming KZ's H2 person went under KZ's grant and waits in KG's queue;
    KZ withdraws the grant: the alert is not sent (judged again before it leaves),
    and the delivery's detail does not name KZ's message."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    original = example_alert()
    source = post(kz, "alert/1", original, ["KG"])["id"]
    deliver(kz)
    grant = post(kz, "grant/1", grant_body(source, ["UZ"], ["victim-protection"]), ["KG"])
    deliver(kz)
    victim = copy.deepcopy(original["subjects"][0])
    own = post(kg, "alert/1", kg_alert_naming(victim), ["UZ"])
    delivery_id = own["deliveries"][0]["id"]
    due(kg, delivery_id, 2**40)
    withdraw_grant(kz, grant["id"])
    deliver(kz)
    due(kg, delivery_id, 0)
    [outcome] = Dispatcher(kg.node).run_once()
    assert (outcome.state, outcome.code) == ("rejected", "policy-denied"), outcome
    assert source not in outcome.detail and "another member" in outcome.detail


def test_a_body_whose_identifiers_fail_stays_pending_and_stops_nothing(
    make_federation, monkeypatch, caplog
):
    """An error computing one received body's identifiers (a defect, or a body of a
    kind no version foresaw) is logged and leaves that message pending; submissions
    and the dispatcher's rounds go on."""
    fed = make_federation(("KZ", "KG", "UZ"))
    kz, kg = fed["KZ"], fed["KG"]
    post(kz, "alert/1", example_alert(), ["KG"])
    deliver(kz)
    real = onward.identifier_keys

    def failing(body, **kwargs):
        if body.get("title") == example_alert()["title"] and not kwargs.get("outgoing"):
            raise ValueError("a defect")
        return real(body, **kwargs)

    monkeypatch.setattr(onward, "identifier_keys", failing)
    someone = copy.deepcopy(example_alert_uzbek_latin()["subjects"][0])
    post(kg, "alert/1", kg_alert_naming(someone), ["UZ"])
    assert {o.state for o in Dispatcher(kg.node).run_once()} == {"delivered"}
    assert "[h2-identifiers]" in caplog.text
    with kg.node.sessions() as session:
        assert session.scalars(select(InboundMessage.h2_keys_version)).all() == [0]
    monkeypatch.setattr(onward, "identifier_keys", real)  # mended: recorded at the next check
    victim = copy.deepcopy(example_alert()["subjects"][0])
    post(kg, "alert/1", kg_alert_naming(victim), ["UZ"], expect=403)
