"""Defects found reviewing the agency API (``/api/v1``) and the admin API: inputs that
gave a 500 instead of a 4xx with a stable code, a retry that let a role send what it
may not send, a justification stored garbled, and an inbox page that ends a listing
too early. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from gateway import inbox, tokens, users
from gateway.dispatcher import Dispatcher
from gateway.models import AuditEntry, DeliveryEvent, InboundMessage, OutboundMessage
from schemas import xb1json
from schemas.examples import example_alert, example_correction, example_referral


def person(member, name, role):
    """Headers of a token for a new person of ``member``'s agency with ``role``."""
    with member.node.sessions() as session:
        user = users.add(
            session, name, full_name=f"A. {name}", agency=member.agency, role=role, by="test"
        )
        secret = tokens.issue(session, member.agency, "test", user=user).secret
        session.commit()
    return {"Authorization": f"Bearer {secret}", "X-Justification": "case KZ-7"}


def admin_headers(member):
    with member.node.sessions() as session:
        secret = tokens.issue(session, "kz-ops", "test", role="admin").secret
        session.commit()
    return {"Authorization": f"Bearer {secret}"}


def post(member, typ, body, to, headers=None):
    answer = member.client().post(
        "/api/v1/messages",
        headers=headers or member.auth(),
        json={"typ": typ, "body": body, "to": to},
    )
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()


def refusal(answer, status, code):
    assert answer.status_code == status, answer.get_json()
    payload = answer.get_json()
    assert payload["error"] == code, payload
    assert payload["message"]


# -------------------------------------------------------------------------- submissions


@pytest.mark.parametrize("to", [[{}], [["KG"]], [{"node": "KG"}]])
def test_a_correction_with_recipients_that_are_not_node_ids_is_a_422(make_federation, to):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    original = post(kz, "alert/1", example_alert(), ["KG"])["id"]
    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "correction/1", "body": example_correction(refers_to=original), "to": to},
    )
    refusal(answer, 422, "bad-recipients")


@pytest.mark.parametrize(
    "key",
    [
        "a\x00b",
        "tab\there",
        "bell\x07",
        # A C1 control character and a bidirectional override, sent as UTF-8 (a WSGI
        # server hands header bytes over as latin-1 characters).
        "next\u0085line".encode().decode("latin-1"),
        "rlo\u202egnp".encode().decode("latin-1"),
        "x" * 101,
    ],
)
def test_an_idempotency_key_with_control_characters_is_a_422(make_federation, key):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    answer = kz.client().post(
        "/api/v1/messages",
        headers={**kz.auth(), "Idempotency-Key": key},
        json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
    )
    refusal(answer, 422, "bad-idempotency-key")
    assert kz.client().get("/api/v1/messages", headers=kz.auth()).get_json()["messages"] == []


def test_an_idempotency_key_is_counted_in_characters_as_written(make_federation):
    """A key of 100 Cyrillic letters (200 bytes of UTF-8) is a key of 100 characters,
    and sending it again gives the stored message back."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    key = "дело-" + "я" * 95
    sent = [
        kz.client().post(
            "/api/v1/messages",
            headers={**kz.auth(), "Idempotency-Key": key.encode().decode("latin-1")},
            json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in sent] == [202, 200], [a.get_json() for a in sent]
    assert sent[0].get_json()["id"] == sent[1].get_json()["id"]
    with kz.node.sessions() as session:
        assert session.get(OutboundMessage, sent[0].get_json()["id"]).idempotency_key == key


@pytest.mark.parametrize("raw", ["%EF%BC%91", "%205", "+5", "5%20", "٣"])
def test_a_query_number_must_be_written_in_ascii_digits(make_federation, raw):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    answer = kz.client().get(f"/api/v1/messages?limit={raw}", headers=kz.auth())
    refusal(answer, 422, "bad-parameter")


def test_an_unknown_recipient_is_named_shortened_and_escaped(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": ["K\x00" + "G" * 5000]},
    )
    refusal(answer, 422, "unknown-recipient")
    message = answer.get_json()["message"]
    assert len(message) < 200 and "\x00" not in message and "'K\\x00GGG" in message


# -------------------------------------------------------------------------- retries


def test_a_retry_needs_a_role_that_may_send_the_type(make_federation):
    """Retrying sends the message again: a role may retry only what it may send, and
    a delivery of a type it may not see is not found."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    caseworker = person(kz, "c.worker", "caseworker")
    officer = person(kz, "o.fficer", "officer")
    message = post(kz, "referral/1", example_referral(), ["KG"], headers=caseworker)
    fed["KG"].server.stop()
    [outcome] = Dispatcher(kz.node).run_once()
    assert outcome.state == "retrying"
    delivery = message["deliveries"][0]["id"]
    client = kz.client()
    # An officer does not even see a referral: as if it did not exist.
    refusal(client.post(f"/api/v1/deliveries/{delivery}/retry", headers=officer), 404, "not-found")
    # A prosecutor sees the agency's alerts (it may read them) but may not send one.
    prosecutor = person(kz, "p.rosecutor", "prosecutor")
    alert = post(kz, "alert/1", example_alert(), ["KG"], headers=officer)
    # (The referral's retry may be due again by now: the backoff in tests is short.)
    retrying = Dispatcher(kz.node).run_once()
    assert retrying and {outcome.state for outcome in retrying} == {"retrying"}
    alert_delivery = alert["deliveries"][0]["id"]
    refusal(
        client.post(f"/api/v1/deliveries/{alert_delivery}/retry", headers=prosecutor),
        403,
        "not-permitted",
    )
    answer = client.post(f"/api/v1/deliveries/{delivery}/retry", headers=caseworker)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["state"] == "queued"
    # The delivery's history names the person who asked, not only the agency.
    with kz.node.sessions() as session:
        details = session.scalars(
            select(DeliveryEvent.detail).where(DeliveryEvent.code == "manual-retry")
        ).all()
    assert details == [f"retry requested by agency {kz.agency} (user c.worker)"]


def test_a_retry_of_another_agencys_delivery_stays_not_found_for_every_role(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    message = post(kz, "referral/1", example_referral(), ["KG"])
    fed["KG"].server.stop()
    Dispatcher(kz.node).run_once()
    with kz.node.sessions() as session:
        user = users.add(
            session, "other.one", full_name="O. One", agency="kz-border", role="officer", by="t"
        )
        secret = tokens.issue(session, "kz-border", "t", user=user).secret
        session.commit()
    answer = kz.client().post(
        f"/api/v1/deliveries/{message['deliveries'][0]['id']}/retry",
        headers={"Authorization": f"Bearer {secret}"},
    )
    refusal(answer, 404, "not-found")  # not 403: another agency's delivery does not exist


# -------------------------------------------------------------------------- the inbox


def inbox_reads(member):
    with member.node.sessions() as session:
        entries = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.kind == "inbox-read")
        ).all()
    return [xb1json.loads(raw) for raw in entries]


def test_a_cyrillic_justification_is_kept_as_written(make_federation):
    """A server hands header bytes over as latin-1 text (PEP 3333); a UTF-8
    justification must reach the audit log as the reader wrote it."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    post(kg, "alert/1", example_alert(), ["KZ"])
    Dispatcher(kg.node).run_once()
    written = "дело KZ-2026-118, опознание жертвы"
    as_received = written.encode("utf-8").decode("latin-1")
    answer = kz.client().get(
        "/api/v1/inbox",
        headers={"Authorization": f"Bearer {kz.token}", "X-Justification": as_received},
    )
    assert answer.status_code == 200, answer.get_json()
    [read] = inbox_reads(kz)
    assert json.dumps(read, ensure_ascii=False).count(written) == 1, read


def test_a_justification_with_a_bidi_override_is_refused(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    as_received = "case 12\u202e81-ZK".encode().decode("latin-1")
    answer = kz.client().get(
        "/api/v1/inbox",
        headers={"Authorization": f"Bearer {kz.token}", "X-Justification": as_received},
    )
    refusal(answer, 422, "bad-justification")


def test_a_page_of_unreadable_corrections_does_not_end_the_inbox(make_federation):
    """A caseworker may not read alerts, nor corrections of alerts. A correction of an
    alert before a referral must not make the caseworker's page empty: a client that
    reads an empty page as "nothing newer" would never see the referral."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    alert = post(kg, "alert/1", example_alert(), ["KZ"])["id"]
    Dispatcher(kg.node).run_once()
    post(kg, "correction/1", example_correction(refers_to=alert), ["KZ"])
    Dispatcher(kg.node).run_once()
    post(kg, "referral/1", example_referral(), ["KZ"])
    Dispatcher(kg.node).run_once()
    caseworker = person(kz, "c.worker", "caseworker")
    client = kz.client()
    whole = client.get("/api/v1/inbox", headers=caseworker).get_json()["messages"]
    assert [m["typ"] for m in whole] == ["referral/1"]
    page = client.get("/api/v1/inbox?after=0&limit=1", headers=caseworker).get_json()
    assert [m["typ"] for m in page["messages"]] == ["referral/1"]


def test_a_long_run_of_unreadable_rows_is_read_once_and_the_cursor_goes_past_it(
    make_federation, monkeypatch
):
    """A page reads at most MAX_SCAN rows beyond itself; a short page's ``next_after``
    says how far it looked, so following it reaches every later message exactly once,
    and a run of rows the reader may not see is not read again on every poll."""
    monkeypatch.setattr(inbox, "MAX_SCAN", 20)
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    post(kg, "referral/1", example_referral(), ["KZ"])
    alert = post(kg, "alert/1", example_alert(), ["KZ"])["id"]
    Dispatcher(kg.node).run_once()
    post(kg, "correction/1", example_correction(refers_to=alert), ["KZ"])
    Dispatcher(kg.node).run_once()
    with kz.node.sessions() as session:
        rows = {m.typ: m for m in session.scalars(select(InboundMessage))}
        columns = [c.key for c in InboundMessage.__table__.columns if c.key != "id"]

        def copy(row, n):
            values = {key: getattr(row, key) for key in columns}
            session.add(
                InboundMessage(**{**values, "envelope_id": f"{n:08d}-0000-4000-8000-000000000000"})
            )
            session.flush()

        first = rows["referral/1"].id
        for n in range(45):  # corrections of an alert: a caseworker may not read them
            copy(rows["correction/1"], n)
        copy(rows["referral/1"], 100)
        copy(rows["referral/1"], 101)
        session.commit()
        later = sorted(
            session.scalars(select(InboundMessage.id).where(InboundMessage.typ == "referral/1"))
        )
    assert later[0] == first
    caseworker = person(kz, "c.worker", "caseworker")
    client = kz.client()
    seen, after, pages = [], first, 0
    while True:
        page = client.get(f"/api/v1/inbox?after={after}&limit=1", headers=caseworker).get_json()
        pages += 1
        seen += [m["id"] for m in page["messages"]]
        if page["next_after"] == after:
            break
        assert page["next_after"] > after
        if page["messages"]:
            assert page["next_after"] == page["messages"][-1]["id"]
        after = page["next_after"]
    assert seen == later[1:]
    # 47 rows after the first referral, 21 read at most per page: 3 short pages, 2 full, 1 last.
    assert pages <= 6


# -------------------------------------------------------------------------- admin API


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        (
            "/api/v1/admin/users",
            {"name": "a.b", "full_name": "A\u0000B", "agency": "kz-police", "role": "officer"},
            "bad-field",
        ),
        (
            "/api/v1/admin/suspensions",
            {"scope": "node", "value": "KG", "reason": "r\u0000"},
            "bad-field",
        ),
        ("/api/v1/admin/tokens", {"holder": "kz-police", "label": "l\u0000"}, "bad-label"),
    ],
)
def test_admin_text_with_a_nul_is_a_422(make_federation, path, body, code):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    answer = kz.client().post(path, headers=admin_headers(kz), json={**body, "by": "B. Admin"})
    refusal(answer, 422, code)


@pytest.mark.parametrize("by", ["x\ud800y", "duty\u2028admin", "\u202eNIMDA ytud", "a\x85b"])
def test_a_recorded_name_is_one_plain_line(make_federation, by):
    """Who decided is written into the audit log: one line, no bidi overrides, and a
    lone surrogate is a 422, not a 500 at the database."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    body = {"scope": "node", "value": "KG", "reason": "test", "by": by}
    answer = kz.client().post("/api/v1/admin/suspensions", headers=admin_headers(kz), json=body)
    refusal(answer, 422, "who-required")


def test_admin_disable_of_a_user_name_with_a_nul_is_not_found(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    answer = kz.client().post(
        "/api/v1/admin/users/a%00b/disable",
        headers=admin_headers(kz),
        json={"reason": "left the service", "by": "B. Admin"},
    )
    refusal(answer, 404, "no-such-user")
