"""What the agency and admin APIs promise beyond single requests: decisions taken
twice at the same moment are taken once, pages end where nothing older is left,
headers mean what they say, HEAD reads nothing, and the node's administration over
HTTP covers the quarantine."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, update

from gateway.dispatcher import Dispatcher
from gateway.models import AuditEntry, InboundMessage
from gateway.tokens import issue
from schemas.examples import example_alert
from tests.test_trust_follow import submit


def _admin(member) -> dict[str, str]:
    with member.node.sessions() as session:
        secret = issue(session, "kz-ops", "automation", role="admin").secret
        session.commit()
    return {"Authorization": f"Bearer {secret}"}


def _at_once(member, path, bodies, headers):
    """POST each body to ``path`` from its own thread, all let go together."""
    barrier = threading.Barrier(len(bodies))
    answers: list = [None] * len(bodies)

    def post(index):
        client = member.client()
        barrier.wait()
        answer = client.post(path, json=bodies[index], headers=headers)
        answers[index] = (answer.status_code, answer.get_json())

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _add_person(member, admin, name, agency, role):
    added = member.client().post(
        "/api/v1/admin/users",
        json={
            "name": name,
            "full_name": name.title(),
            "agency": agency,
            "role": role,
            "by": "setup",
        },
        headers=admin,
    )
    assert added.status_code == 201, added.get_json()


def _audit_kinds(member) -> list[str]:
    with member.node.sessions() as session:
        return list(session.scalars(select(AuditEntry.kind)))


# ----------------------------------------------------------------------------- decisions


def test_one_suspension_of_the_same_member_at_once(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    bodies = [
        {"scope": "node", "value": "KG", "reason": f"reason {i}", "by": f"admin {i}"}
        for i in range(6)
    ]
    answers = _at_once(kz, "/api/v1/admin/suspensions", bodies, admin)
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 409, 409, 409, 409, 409], answers
    assert {body["error"] for status, body in answers if status == 409} == {"already-suspended"}
    active = kz.client().get("/api/v1/admin/suspensions", headers=admin).get_json()
    assert len(active["suspensions"]) == 1
    assert _audit_kinds(kz).count("suspension") == 1


def test_one_lift_of_a_suspension_at_once(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    made = (
        kz.client()
        .post(
            "/api/v1/admin/suspensions",
            json={"scope": "node", "value": "KG", "reason": "checking", "by": "admin"},
            headers=admin,
        )
        .get_json()
    )
    bodies = [{"reason": f"checked {i}", "by": f"admin {i}"} for i in range(6)]
    answers = _at_once(kz, f"/api/v1/admin/suspensions/{made['id']}/lift", bodies, admin)
    assert sorted(status for status, _ in answers) == [200, 409, 409, 409, 409, 409], answers
    [lifted] = [body for status, body in answers if status == 200]
    shown = kz.client().get("/api/v1/admin/suspensions?all=1", headers=admin).get_json()
    [decision] = shown["suspensions"]
    assert decision["lifted_by"] == lifted["lifted_by"]  # the one recorded is the one told
    assert decision["lift_reason"] == lifted["lift_reason"]
    assert _audit_kinds(kz).count("suspension-lifted") == 1
    missing = kz.client().post("/api/v1/admin/suspensions/999/lift", json=bodies[0], headers=admin)
    assert (missing.status_code, missing.get_json()["error"]) == (404, "not-found")


def test_disabling_a_person_twice_at_once_keeps_the_first_decision(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    _add_person(kz, admin, "a.seitkali", "kz-police", "officer")
    bodies = [{"reason": f"left the service {i}", "by": f"admin {i}"} for i in range(6)]
    answers = _at_once(kz, "/api/v1/admin/users/a.seitkali/disable", bodies, admin)
    assert {status for status, _ in answers} == {200}, answers
    # Every caller is told the one decision recorded.
    assert len({(body["disabled_by"], body["disabled_at"]) for _, body in answers}) == 1
    assert _audit_kinds(kz).count("user-disabled") == 1


def test_revoking_a_token_twice_at_once_records_it_once(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    with kz.node.sessions() as session:
        target = issue(session, "kz-border", "to revoke").id
        session.commit()
    bodies = [{"by": f"admin {i}"} for i in range(6)]
    answers = _at_once(kz, f"/api/v1/admin/tokens/{target}/revoke", bodies, admin)
    assert {status for status, _ in answers} == {200}, answers
    assert len({body["revoked_at"] for _, body in answers}) == 1
    assert _audit_kinds(kz).count("token-revoked") == 1


# ----------------------------------------------------------------------------- paging


def test_next_before_is_null_when_the_page_holds_the_last_message(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    for _ in range(3):
        submit(kz, ["KG"])
    whole = kz.client().get("/api/v1/messages?limit=3", headers=kz.auth()).get_json()
    order = [m["id"] for m in whole["messages"]]  # newest first (ids of one ms may swap)
    assert len(order) == 3 and whole["next_before"] is None
    first = kz.client().get("/api/v1/messages?limit=2", headers=kz.auth()).get_json()
    assert [m["id"] for m in first["messages"]] == order[:2]
    assert first["next_before"] == order[1]
    second = (
        kz.client()
        .get(f"/api/v1/messages?limit=2&before={first['next_before']}", headers=kz.auth())
        .get_json()
    )
    assert ([m["id"] for m in second["messages"]], second["next_before"]) == ([order[2]], None)


def test_the_admin_lists_page_through_everything(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    ids = [submit(kz, ["KG"]) for _ in range(5)]
    whole = kz.client().get("/api/v1/admin/deliveries", headers=admin).get_json()
    order = [m["id"] for m in whole["messages"]]
    assert sorted(order) == sorted(ids) and whole["next_before"] is None
    seen, before = [], None
    while True:
        query = "limit=2" + (f"&before={before}" if before else "")
        page = kz.client().get(f"/api/v1/admin/deliveries?{query}", headers=admin).get_json()
        seen += [m["id"] for m in page["messages"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == order
    refused = kz.client().get("/api/v1/admin/deliveries?limit=0", headers=admin)
    assert (refused.status_code, refused.get_json()["error"]) == (422, "bad-limit")
    unknown = kz.client().get("/api/v1/admin/deliveries?before=nothing", headers=admin)
    assert (unknown.status_code, unknown.get_json()["error"]) == (422, "bad-cursor")

    for _ in range(3):  # three refused envelopes
        kz.client().post("/xb1/envelopes", data=b"{}", content_type="application/json")
    page = kz.client().get("/api/v1/admin/rejections?limit=2", headers=admin).get_json()
    assert len(page["rejections"]) == 2 and page["next_before"] == page["rejections"][-1]["id"]
    rest = (
        kz.client()
        .get(f"/api/v1/admin/rejections?limit=2&before={page['next_before']}", headers=admin)
        .get_json()
    )
    assert len(rest["rejections"]) == 1 and rest["next_before"] is None
    assert rest["rejections"][0]["id"] < page["rejections"][-1]["id"]


# ----------------------------------------------------------------------------- headers


def test_the_bearer_scheme_is_read_whatever_its_case(make_federation):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    for scheme in ("bearer", "BEARER", "Bearer"):
        answer = kz.client().get(
            "/api/v1/messages", headers={"Authorization": f"{scheme} {kz.token}"}
        )
        assert answer.status_code == 200, (scheme, answer.get_json())
    for header in (f"Basic {kz.token}", f"Bearer{kz.token}", "Bearer", "bearer "):
        answer = kz.client().get("/api/v1/messages", headers={"Authorization": header})
        assert answer.status_code == 401, header


def test_idempotency_keys_that_are_not_utf8_are_refused(make_federation):
    """WSGI hands header bytes over as latin-1 text: the one byte FF and the UTF-8 of
    "ÿ" would be the same key, and the second message would be taken for the first."""
    kz = make_federation(("KZ", "KG", "UZ"), serve=False)["KZ"]
    client = kz.client()

    def post(key, to):
        return client.post(
            "/api/v1/messages",
            headers={**kz.auth(), "Idempotency-Key": key},
            json={"typ": "alert/1", "body": example_alert(), "to": to},
        )

    refused = post("k-\xff", ["KG"])
    assert (refused.status_code, refused.get_json()["error"]) == (422, "bad-idempotency-key")
    assert post("k-\xc3\xbf", ["UZ"]).status_code == 202  # the UTF-8 of "ÿ": a good key
    justified = client.get(
        "/api/v1/inbox", headers={**kz.auth(), "X-Justification": "case \xff\xfe 12"}
    )
    assert (justified.status_code, justified.get_json()["error"]) == (422, "bad-justification")


def test_head_reads_nothing(make_federation):
    """HEAD would run the GET view: an inbox read recorded and messages marked
    fetched (so a later revocation of their key no longer holds them), nothing shown."""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kg, ["KZ"])
    Dispatcher(kg.node).run_once()
    with kz.node.sessions() as session:
        [message_id] = session.scalars(select(InboundMessage.id))
    admin = _admin(kz)
    for path, headers in (
        ("/api/v1/inbox", {**kz.auth(), "X-Justification": "case 12, checking"}),
        (f"/api/v1/inbox/{message_id}", {**kz.auth(), "X-Justification": "case 12"}),
        ("/api/v1/messages", kz.auth()),
        ("/api/v1/admin/oversight", admin),
    ):
        answer = kz.client().head(path, headers=headers)
        assert answer.status_code == 405, path
        assert answer.headers["Allow"] == "GET", path  # RFC 9110: a 405 names what is taken
    with kz.node.sessions() as session:
        assert session.get(InboundMessage, message_id).fetched_at is None
    kinds = _audit_kinds(kz)
    assert "inbox-read" not in kinds and "oversight-report" not in kinds
    read = kz.client().get(
        "/api/v1/inbox", headers={**kz.auth(), "X-Justification": "case 12, checking"}
    )
    assert read.status_code == 200 and "inbox-read" in _audit_kinds(kz)
    # The framework's own 405s keep their Allow header in the node's JSON answer.
    wrong = kz.client().post("/healthz")
    assert (wrong.status_code, wrong.get_json()["error"]) == (405, "method-not-allowed")
    assert "GET" in wrong.headers["Allow"]


@pytest.mark.parametrize("text", ["2026W011", "20260101", "2026-W10", "2026-1-01", "2026-11-01 "])
def test_the_oversight_report_takes_only_yyyy_mm_dd(make_federation, text):
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    answer = kz.client().get(f"/api/v1/admin/oversight?since={text}", headers=admin)
    assert (answer.status_code, answer.get_json()["error"]) == (422, "bad-period")
    good = kz.client().get("/api/v1/admin/oversight?since=2026-11-01", headers=admin)
    assert good.status_code == 200


# ----------------------------------------------------------------------------- quarantine


def test_the_quarantine_is_listed_and_released_over_http(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kg, ["KZ"])
    Dispatcher(kg.node).run_once()
    held_at = int(time.time())
    with kz.node.sessions() as session:
        [message_id] = session.scalars(select(InboundMessage.id))
        session.execute(
            update(InboundMessage).values(
                quarantined_at=held_at, quarantine_reason="key KG revoked after arrival"
            )
        )
        session.commit()
    admin = _admin(kz)
    with kz.node.sessions() as session:
        observer = issue(session, "kz-dpo", "reads", role="observer").secret
        session.commit()
    reader = {"Authorization": f"Bearer {observer}"}
    listed = kz.client().get("/api/v1/admin/quarantine", headers=reader).get_json()
    [held] = listed["held"]
    assert (held["id"], held["sender"], held["quarantined_at"]) == (message_id, "KG", held_at)
    assert "body" not in held and held["released_at"] is None

    body = {"reason": "confirmed by phone with KG", "by": "duty officer"}
    refused = kz.client().post(
        f"/api/v1/admin/quarantine/{message_id}/release", json=body, headers=reader
    )
    assert (refused.status_code, refused.get_json()["error"]) == (403, "wrong-role")
    released = kz.client().post(
        f"/api/v1/admin/quarantine/{message_id}/release", json=body, headers=admin
    )
    assert released.status_code == 200, released.get_json()
    shown = released.get_json()
    assert shown["release_reason"] == "confirmed by phone with KG"
    assert shown["released_by"].startswith("duty officer (admin token ")
    assert kz.client().get("/api/v1/admin/quarantine", headers=admin).get_json()["held"] == []
    again = kz.client().post(
        f"/api/v1/admin/quarantine/{message_id}/release", json=body, headers=admin
    )
    assert (again.status_code, again.get_json()["error"]) == (409, "not-held")
    assert _audit_kinds(kz).count("quarantine-release") == 1
    unnamed = kz.client().post(
        f"/api/v1/admin/quarantine/{message_id}/release", json={"reason": "x"}, headers=admin
    )
    assert unnamed.status_code == 422


def test_a_person_s_admin_token_is_named_in_what_it_decides(make_federation):
    """What is recorded names who was authenticated, not only what "by" says."""
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    admin = _admin(kz)
    _add_person(kz, admin, "b.admin", "kz-ops", "admin")
    issued = kz.client().post(
        "/api/v1/admin/tokens", json={"user": "b.admin", "by": "setup"}, headers=admin
    )
    person = {"Authorization": f"Bearer {issued.get_json()['secret']}"}
    made = (
        kz.client()
        .post(
            "/api/v1/admin/suspensions",
            json={"scope": "node", "value": "KG", "reason": "checking", "by": "someone else"},
            headers=person,
        )
        .get_json()
    )
    assert made["decided_by"].startswith("someone else (admin token ")
    assert made["decided_by"].endswith(", kz-ops, user b.admin)")
    system = (
        kz.client()
        .post(
            f"/api/v1/admin/suspensions/{made['id']}/lift",
            json={"reason": "checked", "by": "ops"},
            headers=admin,
        )
        .get_json()
    )
    assert "user " not in system["lifted_by"]  # a system's token: no person to name
