"""Local access control: users with roles, deny by default, a role x endpoint matrix,
and an inbox that shows each role only the types it may read."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from gateway import tokens, users
from gateway.dispatcher import Dispatcher
from gateway.errors import ApiError
from gateway.models import AuditEntry, OutboundMessage
from schemas import xb1json
from schemas.examples import example_alert, example_case_request
from tests.test_trust_follow import submit

PEOPLE = {
    "officer": "kz-police",
    "prosecutor": "kz-prosecutor",
    "central-authority": "kz-mvd",
    "caseworker": "kz-shelter",
    "dpo": "kz-dpo",
    "admin": "kz-it",
}
SYSTEMS = {"agency": "kz-police", "admin-system": "kz-ops", "observer": "kz-oversight"}


@pytest.fixture
def node(make_federation):
    fed = make_federation(("KZ", "KG"))
    kz = fed["KZ"]
    secrets = {}
    with kz.node.sessions() as session:
        for role, agency in PEOPLE.items():
            person = users.add(
                session,
                f"{role}.one",
                full_name=f"A. {role.title()}",
                agency=agency,
                role=role,
                by="test admin",
            )
            secrets[role] = tokens.issue(session, agency, "test", user=person).secret
        secrets["agency"] = kz.token
        secrets["admin-system"] = tokens.issue(session, "kz-ops", "t", role="admin").secret
        secrets["observer"] = tokens.issue(session, "kz-oversight", "t", role="observer").secret
        session.commit()
    submit(fed["KG"], ["KZ"])  # an alert for KZ's inbox
    [outcome] = Dispatcher(fed["KG"].node).run_once()
    assert outcome.state == "delivered"
    headers = {
        role: {"Authorization": f"Bearer {secret}", "X-Justification": "case 1"}
        for role, secret in secrets.items()
    }
    return kz, headers


def alert():
    return {"typ": "alert/1", "body": example_alert(), "to": ["KG"]}


CALLS = {
    "submit alert": ("post", "/api/v1/messages", alert),
    "read inbox": ("get", "/api/v1/inbox", None),
    "own messages": ("get", "/api/v1/messages", None),
    "admin read": ("get", "/api/v1/admin/tokens", None),
    "admin change": ("post", "/api/v1/admin/suspensions", lambda: {"scope": "type"}),
    "oversight": ("get", "/api/v1/admin/oversight", None),
}
OK = {200, 201, 202}
# role -> call -> expected status (or error code for refusals)
MATRIX = {
    "officer": {"submit alert": 202, "read inbox": 200, "own messages": 200},
    "prosecutor": {"submit alert": "not-permitted", "read inbox": 200, "own messages": 200},
    "central-authority": {"submit alert": 202, "read inbox": 200, "own messages": 200},
    "caseworker": {"submit alert": "not-permitted", "read inbox": 200, "own messages": 200},
    "dpo": {"admin read": 200, "oversight": 200, "admin change": "wrong-role"},
    "admin": {"admin read": 200, "oversight": 200, "admin change": 422},
    "agency": {"submit alert": 202, "read inbox": 200, "own messages": 200},
    "admin-system": {"admin read": 200, "oversight": 200, "admin change": 422},
    "observer": {"admin read": 200, "oversight": 200, "admin change": "wrong-role"},
}


@pytest.mark.parametrize("role", sorted(MATRIX))
def test_role_by_endpoint_matrix(node, role):
    kz, headers = node
    client = kz.client()
    for call, (method, path, body) in CALLS.items():
        expected = MATRIX[role].get(call, "wrong-role")  # deny by default
        kwargs = {"json": body()} if body else {}
        answer = getattr(client, method)(path, headers=headers[role], **kwargs)
        if isinstance(expected, int):
            # 422: the admin change was allowed and only the incomplete body refused.
            assert answer.status_code == expected, (role, call, answer.get_json())
        else:
            assert answer.status_code in (401, 403), (role, call)
            assert answer.get_json()["error"] == expected, (role, call)
        assert getattr(client, method)(path, **kwargs).status_code == 401


def test_each_role_reads_only_the_types_it_may(node):
    kz, headers = node
    client = kz.client()
    for role, sees in (("officer", 1), ("prosecutor", 1), ("caseworker", 0), ("agency", 1)):
        listed = client.get("/api/v1/inbox", headers=headers[role]).get_json()["messages"]
        assert len(listed) == sees, role
    answer = client.get("/api/v1/inbox/1", headers=headers["caseworker"])
    assert answer.status_code == 404  # as if it did not exist
    assert client.get("/api/v1/inbox/1", headers=headers["officer"]).status_code == 200


def test_consultations_name_the_person(node):
    kz, headers = node
    kz.client().get("/api/v1/inbox", headers=headers["officer"])
    with kz.node.sessions() as session:
        [raw] = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.kind == "inbox-read")
        ).all()
    read = xb1json.loads(raw)
    assert (read["user"], read["agency"]) == ("officer.one", "kz-police")


def test_submissions_name_the_person_and_token(node):
    kz, headers = node
    answer = kz.client().post("/api/v1/messages", headers=headers["officer"], json=alert())
    assert answer.status_code == 202, answer.get_json()
    with kz.node.sessions() as session:
        [raw] = session.scalars(
            select(AuditEntry.entry).where(AuditEntry.kind == "message-submitted")
        ).all()
        [token] = [
            t for t in tokens.listing(session) if t.user_id is not None and t.agency == "kz-police"
        ][:1]
    sent = xb1json.loads(raw)
    assert (sent["user"], sent["agency"], sent["token"]) == ("officer.one", "kz-police", token.id)


def test_a_disabled_person_is_locked_out_at_once(node):
    kz, headers = node
    with kz.node.sessions() as session:
        users.disable(session, "officer.one", reason="left the service", by="test admin")
        session.commit()
    answer = kz.client().get("/api/v1/inbox", headers=headers["officer"])
    assert (answer.status_code, answer.get_json()["error"]) == (401, "bad-token")
    with kz.node.sessions() as session, pytest.raises(ApiError) as raised:
        tokens.issue(session, "kz-police", user=users.get(session, "officer.one"))
    assert raised.value.code == "user-disabled"


def test_person_roles_need_a_person_and_users_are_checked(node):
    kz, _ = node
    with kz.node.sessions() as session:
        with pytest.raises(ApiError) as raised:
            tokens.issue(session, "kz-police", role="officer")
        assert raised.value.code == "bad-role"
        for name, role, code in (
            ("Bad Name", "officer", "bad-user"),
            ("x.y", "king", "bad-role"),
            ("officer.one", "officer", "user-exists"),
        ):
            with pytest.raises(ApiError) as raised:
                users.add(session, name, full_name="X", agency="kz-police", role=role, by="t")
            assert raised.value.code == code


def test_users_through_the_admin_api(node):
    kz, headers = node
    client = kz.client()
    added = client.post(
        "/api/v1/admin/users",
        headers=headers["admin"],
        json={
            "name": "n.ahmedova",
            "full_name": "N. Ahmedova",
            "agency": "kz-ngo",
            "role": "caseworker",
            "by": "A. Admin",
        },
    )
    assert added.status_code == 201 and added.get_json()["created_by"].startswith("A. Admin")
    issued = client.post(
        "/api/v1/admin/tokens", headers=headers["admin"], json={"user": "n.ahmedova"}
    )
    assert issued.status_code == 201 and issued.get_json()["role"] == "caseworker"
    listed = client.get("/api/v1/admin/users", headers=headers["dpo"]).get_json()["users"]
    assert "n.ahmedova" in {u["name"] for u in listed}
    disabled = client.post(
        "/api/v1/admin/users/n.ahmedova/disable",
        headers=headers["admin"],
        json={"reason": "contract ended", "by": "A. Admin"},
    )
    assert disabled.get_json()["disabled_reason"] == "contract ended"


def _joint_agency(kz):
    """An officer and a prosecutor in one agency, and the agency's own system."""
    headers = {}
    with kz.node.sessions() as session:
        for role in ("officer", "prosecutor"):
            person = users.add(
                session, f"{role}.joint", full_name="A. B.", agency="kz-joint", role=role, by="t"
            )
            secret = tokens.issue(session, "kz-joint", "test", user=person).secret
            headers[role] = {"Authorization": f"Bearer {secret}", "X-Justification": "case 7"}
        headers["agency"] = {
            "Authorization": f"Bearer {tokens.issue(session, 'kz-joint', 't').secret}"
        }
        session.commit()
    return headers


def test_within_an_agency_each_role_sees_only_its_types_of_outbound_messages(node):
    kz, _ = node
    headers = _joint_agency(kz)
    client = kz.client()
    case = client.post(
        "/api/v1/messages",
        headers={**headers["prosecutor"], "Idempotency-Key": "case-7"},
        json={"typ": "case-request/1", "body": example_case_request(), "to": ["KG"]},
    )
    assert case.status_code == 202, case.get_json()
    sent = client.post("/api/v1/messages", headers=headers["officer"], json=alert())
    assert sent.status_code == 202, sent.get_json()
    case_id, alert_id = case.get_json()["id"], sent.get_json()["id"]

    def listed(role):
        answer = client.get("/api/v1/messages", headers=headers[role])
        assert answer.status_code == 200, answer.get_json()
        return sorted(m["id"] for m in answer.get_json()["messages"])

    assert listed("officer") == [alert_id]
    assert listed("prosecutor") == sorted([case_id, alert_id])  # prosecutors read alerts
    assert listed("agency") == sorted([case_id, alert_id])
    hidden = client.get(f"/api/v1/messages/{case_id}", headers=headers["officer"])
    assert (hidden.status_code, hidden.get_json()["error"]) == (404, "not-found")
    assert client.get(f"/api/v1/messages/{alert_id}", headers=headers["officer"]).status_code == 200

    # The prosecutor's key does not hand the officer the case request either.
    reused = client.post(
        "/api/v1/messages",
        headers={**headers["officer"], "Idempotency-Key": "case-7"},
        json=alert(),
    )
    assert (reused.status_code, reused.get_json()["error"]) == (409, "idempotency-key-reused")
    assert "case-request" not in reused.get_json()["message"]  # nor what it is
    # Nor where it sits among the agency's messages, nor whether it can be retried.
    cursor = client.get(
        "/api/v1/messages", headers=headers["officer"], query_string={"before": case_id}
    )
    assert (cursor.status_code, cursor.get_json()["error"]) == (422, "bad-cursor")
    [delivery] = case.get_json()["deliveries"]
    retried = client.post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=headers["officer"])
    assert (retried.status_code, retried.get_json()["error"]) == (404, "not-found")
    assert listed("officer") == [alert_id]  # and nothing was submitted


def test_an_outbound_correction_counts_as_the_type_it_corrects(node):
    """The prosecutor withdraws the agency's case request: the officer, who does not see
    case requests, does not see their corrections either (as in the inbox)."""
    from schemas.examples import example_correction

    kz, _ = node
    headers = _joint_agency(kz)
    client = kz.client()
    case = client.post(
        "/api/v1/messages",
        headers=headers["prosecutor"],
        json={"typ": "case-request/1", "body": example_case_request(), "to": ["KG"]},
    )
    assert case.status_code == 202, case.get_json()
    withdrawal = example_correction(
        refers_to=case.get_json()["id"],
        refers_to_type="case-request/1",
        action="withdraw",
        reason_code="duplicate",
    )
    withdrawal.pop("body")
    stop = client.post(
        "/api/v1/messages",
        headers={**headers["prosecutor"], "Idempotency-Key": "stop-7"},
        json={"typ": "correction/1", "body": withdrawal},
    )
    assert stop.status_code == 202, stop.get_json()
    stop_id = stop.get_json()["id"]
    sent = client.post("/api/v1/messages", headers=headers["officer"], json=alert())
    alert_id = sent.get_json()["id"]

    def listed(role):
        answer = client.get("/api/v1/messages", headers=headers[role])
        return sorted(m["id"] for m in answer.get_json()["messages"])

    assert listed("officer") == [alert_id]
    assert stop_id in listed("prosecutor") and stop_id in listed("agency")
    hidden = client.get(f"/api/v1/messages/{stop_id}", headers=headers["officer"])
    assert (hidden.status_code, hidden.get_json()["error"]) == (404, "not-found")
    cursor = client.get(
        "/api/v1/messages", headers=headers["officer"], query_string={"before": stop_id}
    )
    assert (cursor.status_code, cursor.get_json()["error"]) == (422, "bad-cursor")
    [delivery] = stop.get_json()["deliveries"]
    retried = client.post(f"/api/v1/deliveries/{delivery['id']}/retry", headers=headers["officer"])
    assert (retried.status_code, retried.get_json()["error"]) == (404, "not-found")
    # The prosecutor's key does not hand it over either, with a correction the
    # officer may send (of its own alert).
    own = example_correction(
        refers_to=alert_id, refers_to_type="alert/1", action="withdraw", reason_code="duplicate"
    )
    own.pop("body")
    reused = client.post(
        "/api/v1/messages",
        headers={**headers["officer"], "Idempotency-Key": "stop-7"},
        json={"typ": "correction/1", "body": own},
    )
    assert (reused.status_code, reused.get_json()["error"]) == (409, "idempotency-key-reused")
    assert stop_id not in str(reused.get_json())
    # Nor does correcting it, as if it were an alert, tell it apart from no message.
    case_id = case.get_json()["id"]
    answers = []
    for refers_to in (case_id, "01931f3a-0000-7000-8000-000000000000"):
        probe = example_correction(refers_to=refers_to)  # an alert's correction
        answer = client.post(
            "/api/v1/messages",
            headers=headers["officer"],
            json={"typ": "correction/1", "body": probe, "to": ["KG"]},
        )
        answers.append((answer.status_code, answer.get_json()["error"]))
        assert "case-request" not in answer.get_json()["message"]
    assert answers == [(422, "unknown-original")] * 2


def test_outbound_pages_follow_next_before_and_do_not_shift(node):
    kz, headers = node
    client = kz.client()
    officer = headers["officer"]

    def page(**query):
        answer = client.get("/api/v1/messages", headers=officer, query_string=query)
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        return [m["id"] for m in body["messages"]], body["next_before"]

    def send():
        answer = client.post("/api/v1/messages", headers=officer, json=alert())
        assert answer.status_code == 202, answer.get_json()
        return answer.get_json()["id"]

    ids = [send() for _ in range(5)]
    newest_first, _ = page(limit=5)
    assert sorted(newest_first) == sorted(ids)
    first, cursor = page(limit=2)
    assert first == newest_first[:2] and cursor == first[-1]
    late = send()  # submitted between pages, a second later: the next page is unchanged
    with kz.node.sessions() as session:
        session.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == late)
            .values(created_at=OutboundMessage.created_at + 1)
        )
        session.commit()
    second, cursor = page(limit=2, before=cursor)
    assert second == newest_first[2:4] and cursor == second[-1]
    third, cursor = page(limit=2, before=cursor)
    assert (third, cursor) == (newest_first[4:], None)
    assert page(limit=6)[0] == [late, *newest_first]
    # A page that holds the oldest message says nothing is older, full or not.
    assert page(limit=1, before=newest_first[3]) == ([newest_first[4]], None)
    assert page(limit=1, before=newest_first[4]) == ([], None)

    other = client.post("/api/v1/messages", headers=headers["central-authority"], json=alert())
    for cursor in (other.get_json()["id"], "not-an-id", "0" * 36):
        answer = client.get("/api/v1/messages", headers=officer, query_string={"before": cursor})
        assert (answer.status_code, answer.get_json()["error"]) == (422, "bad-cursor"), cursor
