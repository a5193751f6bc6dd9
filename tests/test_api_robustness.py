"""Garbage against every HTTP endpoint of a node: whatever arrives, the answer is never a
500, always carries the security headers, and is either the one JSON error shape
``{"error": CODE, "message": TEXT}`` or, for an envelope whose sender was
authenticated (PROTOCOL §7), a receipt signed by the node.

The Hypothesis tests run on SQLite through the Flask test client (one federation per
test, shared by its examples); the few inputs that only PostgreSQL refuses (NUL
characters, 32-bit row ids) have a fixed test on both databases.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.envelope import REJECTION_CODES, TYP_RE, Recipient, seal, verify_receipt
from gateway.errors import SECURITY_HEADERS
from gateway.models import AuditEntry, InboundRejection
from schemas.examples import example_alert
from schemas.xb1json import dumps as xb1_dumps
from tests.conftest import sqlite_only

fuzz = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ERROR_CODE = re.compile(r"[a-z][a-z0-9-]{1,39}\Z")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE"]
HUGE = 10**30  # beyond every integer column

# -------------------------------------------------------------------------- strategies

odd_characters = st.sampled_from(["\x00", "\ud800", "\u202e", "\ufeff", "é", "\n", '"', "\\"])
json_text = st.text(alphabet=st.characters() | odd_characters, max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(json_text, inner, max_size=4),
    max_leaves=12,
)
# Header values as a WSGI server hands them over: latin-1, no line breaks or NUL.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
)
# Query and path text as a client can send it (URL-encoded UTF-8, so no lone surrogates).
url_text = st.text(max_size=30)
integer_text = st.integers(min_value=-(2**80), max_value=2**80).map(str)


@st.composite
def alert_like(draw: st.DrawFn) -> Any:
    """A valid alert with a few members replaced by garbage, or garbage outright."""
    if draw(st.integers(0, 4)) == 0:
        return draw(json_values)
    body = example_alert()
    for _ in range(draw(st.integers(0, 3))):
        body[draw(st.sampled_from(sorted(body)))] = draw(json_values)
    if draw(st.booleans()):
        body[draw(json_text)] = draw(json_scalars)
    return body


submissions = (
    st.fixed_dictionaries(
        {},
        optional={
            "typ": st.sampled_from(["alert/1", "alert/2", "receipt/1", ""]) | json_values,
            "body": alert_like(),
            "to": st.sampled_from([["KG"], ["KZ"], ["UZ"], ["KG", "KG"], []])
            | st.lists(st.sampled_from(["KG", "kg", "KG-X", ""]) | json_text, max_size=3)
            | json_values,
            "extra": json_values,
        },
    )
    | json_values
)


def canonical_or_plain(value: Any) -> bytes:
    """xb1-json when the value allows it (so the payload gets as far as the schema)."""
    try:
        return xb1_dumps(value)
    except ValueError:
        return json_bytes(value)


class Nested(bytes):
    """Deeply nested JSON, with a repr short enough for a failure report."""

    def __repr__(self) -> str:
        return f"Nested(b'[' * {len(self)})"


DEEP = Nested(b"[" * 50_000)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


request_bodies = (
    submissions.map(json_bytes)
    | st.binary(max_size=300)
    | st.sampled_from([b"", b"{", DEEP, b'{"typ": "alert/1", "typ": 1}', b"\xff\xfe"])
)

# -------------------------------------------------------------------------- checks


def check_answer(response: Any, *, receipt: bool = False) -> Any:
    """The invariants of every answer; returns the parsed JSON body (None if empty)."""
    status = response.status_code
    body = response.get_data()
    assert status < 500, (status, body[:300])
    for name, value in SECURITY_HEADERS:
        assert response.headers.get_all(name) == [value], name
    if response.request.method == "HEAD":
        assert not body
        return None
    if response.request.method == "OPTIONS" and 200 <= status < 300 and not body:
        return None  # Flask's automatic answer listing the allowed methods
    payload = json.loads(body)
    assert isinstance(payload, dict), body[:300]
    if receipt and set(payload) == {"protected", "signature"}:
        return payload
    if status >= 300:
        assert set(payload) >= {"error", "message"}, payload
        assert isinstance(payload["error"], str) and ERROR_CODE.match(payload["error"]), payload
        assert isinstance(payload["message"], str) and len(payload["message"].split()) >= 3
    return payload


def check_receipt(response: Any, federation: Any, envelope: Any) -> None:
    """An authenticated envelope gets a receipt signed by the node, naming it exactly."""
    payload = check_answer(response, receipt=True)
    assert set(payload) == {"protected", "signature"}, payload
    assert response.mimetype == "application/xb1+json"
    kz = federation["KZ"]
    # Not through verify_receipt(envelope=...): that is the sender's check and also wants
    # the signer among the recipients, which a not-a-recipient receipt is not.
    verified = verify_receipt(response.get_data(), trust=kz.node.trust().keys, now=int(time.time()))
    assert (verified.ref, verified.to) == (envelope.header.id, "KG")
    assert (verified.ph, verified.ch) == (envelope.ph, envelope.ch)
    assert verified.signer.node == "KZ"
    if response.status_code == 200:
        assert verified.accepted
    else:
        assert 400 <= response.status_code < 500
        assert not verified.accepted and verified.reason in REJECTION_CODES


class Nodes:
    """The federation under test, with a short repr for Hypothesis' failure reports."""

    def __init__(self, federation: Any) -> None:
        self.federation = federation

    def __getitem__(self, node_id: str) -> Any:
        return self.federation[node_id]

    def __repr__(self) -> str:
        return f"<federation {', '.join(self.federation.members)}>"


@pytest.fixture
def federation(make_federation: Any) -> Nodes:
    return Nodes(make_federation(("KZ", "KG"), serve=False))


def agency_headers(federation: Any, auth: str) -> dict[str, str]:
    if auth == "valid":
        return federation["KZ"].auth()
    if auth == "missing":
        return {}
    return {"Authorization": auth}


authorisations = st.sampled_from(["valid", "valid", "valid", "missing"]) | header_text.map(
    lambda text: "Bearer " + text
)

# -------------------------------------------------------------------------- peer API


@sqlite_only
@fuzz
@given(
    raw=st.binary(max_size=2000)
    | json_values.map(json_bytes)
    | st.fixed_dictionaries(
        {"protected": json_values, "ciphertext": json_values, "signature": json_values}
    ).map(json_bytes),
    content_type=st.sampled_from(["application/xb1+json", "application/json", "text/plain"]),
)
@example(raw=DEEP, content_type="application/xb1+json")
@example(raw=b'{"protected":"","ciphertext":"","signature":""}', content_type="text/plain")
def test_peer_envelopes_garbage(federation: Any, raw: bytes, content_type: str) -> None:
    response = (
        federation["KZ"]
        .client()
        .post("/xb1/envelopes", data=raw, headers={"Content-Type": content_type})
    )
    payload = check_answer(response)
    assert 400 <= response.status_code < 500
    assert payload["error"] in REJECTION_CODES  # nobody is authenticated: no receipt


@sqlite_only
@fuzz
@given(
    typ=st.just("alert/1") | st.from_regex(TYP_RE, fullmatch=True),
    payload=alert_like().map(canonical_or_plain)
    | st.builds(lambda: xb1_dumps(example_alert()))
    | st.binary(max_size=200),
    to=st.sampled_from([("KZ",), ("KG",), ("KG", "KZ")]),
    iat_offset=st.integers(min_value=-40 * 86400, max_value=3 * 3600),
    ttl=st.integers(min_value=1, max_value=40 * 86400),
    tl=st.integers(min_value=1, max_value=2**53 - 1),
)
def test_peer_envelopes_from_a_trusted_sender_get_signed_receipts(
    federation: Any,
    typ: str,
    payload: bytes,
    to: tuple[str, ...],
    iat_offset: int,
    ttl: int,
    tl: int,
) -> None:
    kz, kg = federation["KZ"], federation["KG"]
    now = int(time.time())
    keys = kz.node.trust().keys
    recipients = [
        Recipient(node, key.kid, key.pub) for node in to for key in [keys.encryption_key(node, now)]
    ]
    envelope = seal(
        typ=typ,
        payload=payload,
        sender="KG",
        signing_key=kg.keys.current_signing,
        recipients=recipients,
        tl=tl,
        iat=now + iat_offset,
        ttl=ttl,
    )
    response = kz.client().post("/xb1/envelopes", data=envelope.to_wire())
    check_receipt(response, federation, envelope)


@sqlite_only
def test_content_length_lies_on_the_peer_api(make_federation: Any) -> None:
    fed = make_federation(("KZ", "KG"), serve=False)
    client = fed["KZ"].client()
    limit = fed["KZ"].node.settings.max_envelope_bytes

    # A body shorter than announced (the peer hung up): what arrived is refused as
    # malformed and recorded, not a hang or a 500.
    truncated = client.post(
        "/xb1/envelopes", data=b'{"protected":', environ_overrides={"CONTENT_LENGTH": "500"}
    )
    assert truncated.status_code == 400 and check_answer(truncated)["error"] == "malformed"
    with fed["KZ"].node.sessions() as session:
        [kept] = session.scalars(select(InboundRejection.wire)).all()
    assert kept == b'{"protected":'

    # A body longer than announced is cut at the announced length.
    cut = client.post(
        "/xb1/envelopes", data=b"{}" + b" " * 100, environ_overrides={"CONTENT_LENGTH": "1"}
    )
    assert cut.status_code == 400 and check_answer(cut)["error"] == "malformed"

    for length in ("-1", "abc", "", "1e3"):
        check_answer(
            client.post("/xb1/envelopes", data=b"{}", environ_overrides={"CONTENT_LENGTH": length})
        )

    # Announced or real size over the limit: too-large, refused before reading, recorded.
    announced = client.post(
        "/xb1/envelopes", data=b"{}", environ_overrides={"CONTENT_LENGTH": str(limit + 1)}
    )
    real = client.post("/xb1/envelopes", data=b" " * (limit + 1))
    for response in (announced, real):
        assert response.status_code == 413
        assert check_answer(response)["error"] == "too-large"
    with fed["KZ"].node.sessions() as session:
        codes = [row.code for row in session.query(InboundRejection).order_by(InboundRejection.id)]
        audited = [
            json.loads(entry)["code"]
            for entry in session.scalars(
                select(AuditEntry.entry).where(AuditEntry.kind == "envelope-refused")
            )
        ]
    assert codes.count("too-large") == 2
    assert audited.count("too-large") == 2  # each refusal has its audit entry too


@sqlite_only
def test_content_length_lies_on_the_agency_api(make_federation: Any) -> None:
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    headers = {**kz.auth(), "Content-Type": "application/json"}
    truncated = kz.client().post(
        "/api/v1/messages",
        data=b'{"typ": "alert/1"',
        headers=headers,
        environ_overrides={"CONTENT_LENGTH": "4000"},
    )
    assert truncated.status_code == 400 and check_answer(truncated)["error"] == "bad-body"
    oversized = kz.client().post(
        "/api/v1/messages",
        data=b"{}",
        headers=headers,
        environ_overrides={"CONTENT_LENGTH": str(kz.node.settings.max_envelope_bytes * 2)},
    )
    assert oversized.status_code == 413 and check_answer(oversized)["error"] == "too-large"


# -------------------------------------------------------------------------- agency API


@sqlite_only
@fuzz
@given(
    body=request_bodies,
    auth=authorisations,
    idempotency_key=st.none() | header_text,
    content_type=st.sampled_from(["application/json", "text/plain", "application/xb1+json"])
    | header_text,
    query=st.dictionaries(url_text, url_text, max_size=3),
)
@example(
    body=DEEP,
    auth="valid",
    idempotency_key=None,
    content_type="application/json",
    query={},
)
def test_submit_message_garbage(
    federation: Any,
    body: bytes,
    auth: str,
    idempotency_key: str | None,
    content_type: str,
    query: dict[str, str],
) -> None:
    headers = {**agency_headers(federation, auth), "Content-Type": content_type}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = (
        federation["KZ"]
        .client()
        .post("/api/v1/messages", data=body, headers=headers, query_string=query)
    )
    payload = check_answer(response)
    if response.status_code in (200, 202):
        assert payload["typ"] == "alert/1" and payload["deliveries"]
        assert [d["recipient"] for d in payload["deliveries"]] == ["KG"]


@sqlite_only
@fuzz
@given(
    state=st.none() | st.sampled_from(["queued", "delivered", "QUEUED", ""]) | url_text,
    limit=st.none() | integer_text | url_text,
    before=st.none() | url_text | st.uuids().map(str),
    auth=authorisations,
)
def test_list_messages_garbage_query(
    federation: Any, state: str | None, limit: str | None, before: str | None, auth: str
) -> None:
    query = {
        k: v for k, v in (("state", state), ("limit", limit), ("before", before)) if v is not None
    }
    response = (
        federation["KZ"]
        .client()
        .get("/api/v1/messages", query_string=query, headers=agency_headers(federation, auth))
    )
    payload = check_answer(response)
    if response.status_code == 200:
        assert isinstance(payload["messages"], list)


@sqlite_only
@fuzz
@given(message_id=url_text.filter(bool) | integer_text, auth=authorisations)
@example(message_id="a\x00b", auth="valid")
@example(message_id="/0", auth="valid")  # %2F decodes to a slash: still a JSON answer
def test_get_message_garbage_id(federation: Any, message_id: str, auth: str) -> None:
    response = (
        federation["KZ"]
        .client()
        .get(
            "/api/v1/messages/" + quote(message_id, safe=""),
            headers=agency_headers(federation, auth),
        )
    )
    check_answer(response)
    assert response.status_code in (401, 404), response.get_data()


@sqlite_only
@fuzz
@given(delivery_id=integer_text | url_text.filter(bool), auth=authorisations)
@example(delivery_id=str(HUGE), auth="valid")
@example(delivery_id=str(2**63), auth="valid")
def test_retry_garbage_delivery(federation: Any, delivery_id: str, auth: str) -> None:
    response = (
        federation["KZ"]
        .client()
        .post(
            f"/api/v1/deliveries/{quote(delivery_id, safe='')}/retry",
            headers=agency_headers(federation, auth),
        )
    )
    check_answer(response)
    assert response.status_code in (401, 404, 422), response.get_data()


@sqlite_only
@fuzz
@given(
    after=st.none() | integer_text | url_text,
    limit=st.none() | integer_text | url_text,
    auth=authorisations,
)
@example(after=str(HUGE), limit=None, auth="valid")
@example(after=str(-HUGE), limit="5", auth="valid")
def test_inbox_garbage_query(
    federation: Any, after: str | None, limit: str | None, auth: str
) -> None:
    query = {k: v for k, v in (("after", after), ("limit", limit)) if v is not None}
    response = (
        federation["KZ"]
        .client()
        .get("/api/v1/inbox", query_string=query, headers=agency_headers(federation, auth))
    )
    payload = check_answer(response)
    if response.status_code == 200:
        assert payload["messages"] == []


@sqlite_only
@fuzz
@given(inbound_id=integer_text | url_text.filter(bool), auth=authorisations)
@example(inbound_id=str(HUGE), auth="valid")
def test_inbox_message_garbage_id(federation: Any, inbound_id: str, auth: str) -> None:
    response = (
        federation["KZ"]
        .client()
        .get(
            f"/api/v1/inbox/{quote(inbound_id, safe='')}", headers=agency_headers(federation, auth)
        )
    )
    check_answer(response)
    assert response.status_code in (401, 404, 422), response.get_data()


# -------------------------------------------------------------------------- everything else

KNOWN = {
    "/xb1/envelopes": {"POST"},
    "/xb1/trust-list": {"GET"},
    "/api/v1/messages": {"GET", "POST"},
    "/api/v1/messages/0190a1b2-0000-7000-8000-000000000000": {"GET"},
    "/api/v1/deliveries/1/retry": {"POST"},
    "/api/v1/inbox": {"GET"},
    "/api/v1/inbox/1": {"GET"},
    "/healthz": {"GET"},
    "/readyz": {"GET"},
}


@sqlite_only
@fuzz
@given(
    path=st.sampled_from(sorted(KNOWN))
    | st.lists(url_text.filter(bool), min_size=1, max_size=4).map(
        lambda parts: "/" + "/".join(quote(p, safe="") for p in parts)
    )
    | st.sampled_from(sorted(KNOWN)).flatmap(
        lambda known: url_text.map(lambda tail: known + "/" + quote(tail, safe=""))
    ),
    method=st.sampled_from(METHODS),
    auth=authorisations,
)
def test_unknown_paths_and_wrong_methods(
    federation: Any, path: str, method: str, auth: str
) -> None:
    response = (
        federation["KZ"]
        .client()
        .open(path, method=method, headers=agency_headers(federation, auth))
    )
    check_answer(response)
    if path in KNOWN and method not in KNOWN[path] | {"HEAD", "OPTIONS"}:
        assert response.status_code == 405
    if path not in KNOWN and method != "OPTIONS":  # OPTIONS on /api/v1/inbox/7 is a 200
        assert response.status_code in (401, 404, 405), (path, method, response.status_code)


@sqlite_only
def test_doubled_slash_is_answered_in_json(make_federation: Any) -> None:
    """``/api/v1//inbox`` must not get werkzeug's HTML redirect page."""
    fed = make_federation(("KZ", "KG"), serve=False)
    for path in ("/api/v1//inbox", "/xb1//trust-list"):
        response = fed["KZ"].client().get(path, headers=fed["KZ"].auth())
        check_answer(response)


@sqlite_only
def test_security_headers_are_added_once_and_a_views_own_is_kept(make_federation: Any) -> None:
    from flask import Response

    from gateway.app import create_app

    fed = make_federation(("KZ", "KG"), serve=False)
    app = create_app(node=fed["KZ"].node)
    # A view that sets one of the headers itself (in another spelling of its name).
    app.add_url_rule(
        "/own-cache", "own", lambda: Response("{}", headers={"cache-control": "max-age=5"})
    )
    client = app.test_client()
    answer = client.get("/own-cache")
    assert answer.headers.get_all("Cache-Control") == ["max-age=5"]
    for name, value in SECURITY_HEADERS:
        if name != "Cache-Control":
            assert answer.headers.get_all(name) == [value], name
    check_answer(client.get("/healthz"))


# -------------------------------------------------------------------------- both databases


def test_hostile_identifiers_on_both_databases(make_federation: Any) -> None:
    """Inputs that only PostgreSQL chokes on: NUL characters and ids past 32 bits."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    client = kz.client()
    headers = kz.auth()
    cases = [
        ("GET", "/api/v1/messages/a%00b", {}, {404}),
        ("GET", f"/api/v1/inbox/{2**31}", {}, {404, 422}),
        ("GET", f"/api/v1/inbox/{HUGE}", {}, {404, 422}),
        ("POST", f"/api/v1/deliveries/{2**31}/retry", {}, {404, 422}),
        ("POST", f"/api/v1/deliveries/{HUGE}/retry", {}, {404, 422}),
        ("GET", "/api/v1/inbox", {"after": str(2**31)}, {200, 422}),
        ("GET", "/api/v1/inbox", {"after": str(HUGE)}, {200, 422}),
    ]
    failures = []
    for method, path, query, expected in cases:
        response = client.open(path, method=method, headers=headers, query_string=query)
        if response.status_code not in expected:
            failures.append((method, path, query, response.status_code))
        else:
            check_answer(response)
    for length in (2**31, 2**63, HUGE):
        response = client.post(
            "/xb1/envelopes", data=b"{}", environ_overrides={"CONTENT_LENGTH": str(length)}
        )
        if response.status_code != 413:
            failures.append(
                ("POST", "/xb1/envelopes", f"Content-Length {length}", response.status_code)
            )
    assert failures == [], "answers that should be 4xx:\n" + "\n".join(map(str, failures))


def test_a_table_dropped_by_hand_is_answered_as_damage_not_an_internal_error(
    make_federation: Any,
) -> None:
    """A database that lacks a table of the node (dropped by hand, a bad restore) is
    answered 503 ``database-damaged`` on both databases (on PostgreSQL it used to be an
    internal error): the peer sends the envelope again later, nothing is lost."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz, kg = fed["KZ"], fed["KG"]
    key = kz.node.trust().keys.encryption_key("KZ", int(time.time()))
    envelope = seal(
        typ="alert/1",
        body=example_alert(),
        sender="KG",
        signing_key=kg.keys.current_signing,
        recipients=[Recipient("KZ", key.kid, key.pub)],
        tl=1,
    )
    with kz.node.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE audit_entries")
    client = kz.client()
    answers = [
        client.post("/xb1/envelopes", data=envelope.to_wire()),
        client.post(
            "/api/v1/messages",
            headers=kz.auth(),
            json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
        ),
    ]
    for answer in answers:
        assert answer.status_code == 503, answer.get_data()
        assert answer.get_json()["error"] == "database-damaged"
        assert "backup" in answer.get_json()["message"]
        assert answer.headers["Retry-After"]


def test_readiness_names_a_missing_table_as_damage(make_federation: Any) -> None:
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    assert kz.client().get("/readyz").status_code == 200
    with kz.node.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE trust_hints")
    ready = kz.client().get("/readyz")
    assert ready.status_code == 503
    [alarm] = ready.get_json()["alarms"]
    assert alarm["code"] == "database-damaged" and "trust_hints" in alarm["message"]
