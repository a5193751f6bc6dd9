"""The admin API: deny by default across roles, the same operations as the CLI,
and who asked recorded with every change."""

from __future__ import annotations

import io
import os

import pytest
from gunicorn.http.errors import InvalidChunkSize
from sqlalchemy import func, select

import keys.sealed
from gateway import config
from gateway.app import create_app
from gateway.config import load_settings, write_instance_file
from gateway.inbox import list_rejections
from gateway.models import AuditEntry
from gateway.node import Node
from gateway.tokens import issue
from keys.nodekeys import NodeKeys
from keys.trustlist import TrustError, TrustList
from tests.test_trust_follow import next_version

NO_POLICY = (
    "no policy.toml: every exchange with every member is allowed; write the node's bilateral "
    "agreements there (docs/policy.md)"
)

READS = [
    ("get", "/api/v1/admin/trust-list"),
    ("get", "/api/v1/admin/keys"),
    ("get", "/api/v1/admin/suspensions"),
    ("get", "/api/v1/admin/tokens"),
    ("get", "/api/v1/admin/deliveries"),
    ("get", "/api/v1/admin/rejections"),
    ("get", "/api/v1/admin/oversight"),
]
WRITES = [
    ("post", "/api/v1/admin/trust-list"),
    ("post", "/api/v1/admin/trust-list/fetch"),
    ("post", "/api/v1/admin/suspensions"),
    ("post", "/api/v1/admin/suspensions/1/lift"),
    ("post", "/api/v1/admin/tokens"),
    ("post", "/api/v1/admin/tokens/1/revoke"),
]
AGENCY = [
    ("get", "/api/v1/inbox"),
    ("get", "/api/v1/messages"),
    ("post", "/api/v1/messages"),
]


@pytest.fixture
def node_with_roles(make_federation):
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    with kz.node.sessions() as session:
        secrets = {
            "admin": issue(session, "kz-ops", "automation", role="admin").secret,
            "observer": issue(session, "kz-dpo", "oversight", role="observer").secret,
        }
        session.commit()
    secrets["agency"] = kz.token
    return fed, kz, {role: {"Authorization": f"Bearer {s}"} for role, s in secrets.items()}


def call(client, method, path, headers, **kwargs):
    return getattr(client, method)(path, headers=headers, **kwargs)


def test_role_by_endpoint_matrix(node_with_roles):
    _, kz, auth = node_with_roles
    client = kz.client()
    for method, path in READS + WRITES + AGENCY:
        assert call(client, method, path, {}).status_code == 401, path
    for method, path in READS + WRITES:
        answer = call(client, method, path, auth["agency"])
        assert (answer.status_code, answer.get_json()["error"]) == (403, "wrong-role"), path
    for method, path in AGENCY:
        for role in ("admin", "observer"):
            answer = call(client, method, path, auth[role])
            assert (answer.status_code, answer.get_json()["error"]) == (403, "wrong-role"), path
    for method, path in READS:
        for role in ("admin", "observer"):
            assert call(client, method, path, auth[role]).status_code == 200, (role, path)
    for method, path in WRITES:
        answer = call(client, method, path, auth["observer"], json={})
        assert (answer.status_code, answer.get_json()["error"]) == (403, "wrong-role"), path


def test_admin_operations_over_http(node_with_roles):
    fed, kz, auth = node_with_roles
    client = kz.client()
    admin = auth["admin"]

    view = client.get("/api/v1/admin/trust-list", headers=admin).get_json()
    assert view["version"] == 1 and [n["node"] for n in view["nodes"]] == ["KZ", "KG"]
    assert all(len(k["fingerprint"].split()) == 8 for n in view["nodes"] for k in n["keys"])
    assert view["key_problems"] == []
    # Keys that are not the ones the list carries for this node: said in the view.
    own_keys = kz.node.keys
    kz.node.keys = NodeKeys.generate("KZ")
    try:
        problems = client.get("/api/v1/admin/trust-list", headers=admin).get_json()
        ready = client.get("/readyz")
    finally:
        kz.node.keys = own_keys
    # ... and readiness fails with an alarm for each, for the operator's monitoring.
    assert ready.status_code == 503
    assert ready.get_json()["alarms"] == [
        {"code": "key-listing", "message": problem} for problem in problems["key_problems"]
    ]
    assert client.get("/readyz").get_json() == {
        "alarms": [],
        "node": "KZ",
        # The test nodes run without a policy file: said, but no reason to stop.
        "notices": [{"code": "no-policy", "message": NO_POLICY}],
        "status": "ready",
    }
    assert len(problems["key_problems"]) == 2
    assert "no signing key" in problems["key_problems"][0]
    assert "not-a-recipient" in problems["key_problems"][1]

    wire = next_version(fed, kz.node.trust())
    installed = client.post("/api/v1/admin/trust-list", headers=admin, data=wire)
    assert installed.status_code == 201 and installed.get_json()["version"] == 2
    again = client.post("/api/v1/admin/trust-list", headers=admin, data=wire)
    assert (again.status_code, again.get_json()["error"]) == (400, "trust-rollback")

    made = client.post(
        "/api/v1/admin/suspensions",
        headers=admin,
        json={"scope": "node", "value": "KG", "reason": "review", "by": "A. Seitkali"},
    )
    assert made.status_code == 201
    decision = made.get_json()
    assert decision["decided_by"].startswith("A. Seitkali (admin token ")
    blocked = client.post(
        "/api/v1/messages",
        headers=auth["agency"],
        json={"typ": "alert/1", "body": _alert(), "to": ["KG"]},
    )
    assert blocked.status_code == 403 and blocked.get_json()["error"] == "suspended"
    lifted = client.post(
        f"/api/v1/admin/suspensions/{decision['id']}/lift",
        headers=admin,
        json={"reason": "done", "by": "A. Seitkali"},
    )
    assert lifted.status_code == 200 and lifted.get_json()["lifted_at"] is not None

    issued = client.post(
        "/api/v1/admin/tokens",
        headers=admin,
        json={"holder": "kz-ngo", "role": "agency", "label": "shelter"},
    )
    assert issued.status_code == 201 and issued.get_json()["secret"].startswith("gwt_")
    listed = client.get("/api/v1/admin/tokens", headers=auth["observer"]).get_json()["tokens"]
    assert all("secret" not in t for t in listed)
    assert {t["role"] for t in listed} == {"agency", "admin", "observer"}
    own = next(t["id"] for t in listed if t["holder"] == "kz-ops")
    refused = client.post(f"/api/v1/admin/tokens/{own}/revoke", headers=admin)
    assert (refused.status_code, refused.get_json()["error"]) == (409, "own-token")
    ngo = issued.get_json()["id"]
    assert client.post(f"/api/v1/admin/tokens/{ngo}/revoke", headers=admin).status_code == 200

    keys = client.get("/api/v1/admin/keys", headers=auth["observer"]).get_json()
    assert keys["signs_with"] == kz.keys.current_signing.kid
    assert {k["use"] for k in keys["keys"]} == {"sig", "enc"}

    bad = client.post("/api/v1/admin/suspensions", headers=admin, json={"scope": "node"})
    assert (bad.status_code, bad.get_json()["error"]) == (422, "bad-field")

    # A node that is no member is the caller's mistake, not a peer's failure.
    stranger = client.post("/api/v1/admin/trust-list/fetch", headers=admin, json={"from": "TJ"})
    assert (stranger.status_code, stranger.get_json()["error"]) == (422, "unknown-node")
    assert "gateway trust show" in stranger.get_json()["message"]
    # An empty or malformed id is not "every peer", and is not echoed back.
    for value in ("", "kg", "K\x00G", "KG" * 200):
        odd = client.post("/api/v1/admin/trust-list/fetch", headers=admin, json={"from": value})
        assert (odd.status_code, odd.get_json()["error"]) == (422, "bad-field"), value
        assert value not in odd.get_json()["message"] or not value


def _alert():
    from schemas.examples import example_alert

    return example_alert()


@pytest.fixture
def node_without_trust(make_federation, databases, tmp_path):
    """A new node KZ of the federation, no trust list installed yet: (federation,
    instance folder, test client, admin token headers)."""
    fed = make_federation(("KZ", "KG"), serve=False)
    instance = tmp_path / "kz-new"
    instance.mkdir()
    write_instance_file(instance, {"node": "KZ", "database_url": databases.new_url("KZ-new")})
    node = Node(load_settings(instance), keys=fed["KZ"].keys)
    with node.sessions() as session:
        secret = issue(session, "kz-ops", "automation", role="admin").secret
        session.commit()
    yield fed, instance, create_app(node=node).test_client(), {"Authorization": f"Bearer {secret}"}
    node.engine.dispose()


def test_the_first_list_installed_over_http_pins_its_anchor(node_without_trust):
    """Version 1 installed with ?anchor= pins the anchor in gateway.toml, as `gateway
    trust install --anchor` does, so every later start re-verifies the stored list;
    an anchor that contradicts the pinned one is refused."""
    fed, instance, client, admin = node_without_trust
    wrong = "ab" * 32
    refused = client.post(
        f"/api/v1/admin/trust-list?anchor={wrong}", headers=admin, data=fed.trust_wire
    )
    assert refused.get_json()["error"] == "trust-anchor-mismatch"
    assert "trust_anchor" not in (instance / "gateway.toml").read_text()
    installed = client.post(
        f"/api/v1/admin/trust-list?anchor={fed.anchor}", headers=admin, data=fed.trust_wire
    )
    assert installed.status_code == 201, installed.get_json()
    assert f'trust_anchor = "{fed.anchor}"' in (instance / "gateway.toml").read_text()
    assert load_settings(instance).trust_anchor == fed.anchor
    contradicted = client.post(
        f"/api/v1/admin/trust-list?anchor={wrong}", headers=admin, data=fed.trust_wire
    )
    assert (contradicted.status_code, contradicted.get_json()["error"]) == (
        400,
        "trust-anchor-mismatch",
    )


def test_a_first_list_issued_days_ahead_of_the_clock_is_not_installed(node_without_trust):
    """T10 holds for version 1 too: installed, it would stop every version issued before
    its date (a revocation among them)."""
    fed, instance, _, _ = node_without_trust
    node = Node(load_settings(instance), keys=fed["KZ"].keys)
    try:
        issued_at = TrustList.from_anchor(fed.trust_wire, bytes.fromhex(fed.anchor), 0).issued_at
        with pytest.raises(TrustError) as refused:
            node.install_trust_list(fed.trust_wire, anchor=fed.anchor, now=issued_at - 2 * 86400)
        assert refused.value.code == "trust-time"
        assert "trust_anchor" not in (instance / "gateway.toml").read_text()
        assert node.install_trust_list(fed.trust_wire, anchor=fed.anchor).version == 1
    finally:
        node.engine.dispose()


def test_an_anchor_that_cannot_be_pinned_installs_nothing(node_without_trust, monkeypatch):
    fed, _, client, admin = node_without_trust

    def read_only(path, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(config, "atomic_write", read_only)
    answer = client.post(
        f"/api/v1/admin/trust-list?anchor={fed.anchor}", headers=admin, data=fed.trust_wire
    )
    assert (answer.status_code, answer.get_json()["error"]) == (500, "trust-anchor-not-pinned")
    assert "GATEWAY_TRUST_ANCHOR" in answer.get_json()["message"]
    assert client.get("/api/v1/admin/trust-list", headers=admin).status_code != 200


def test_an_unreadable_configuration_pins_nothing_and_installs_nothing(node_without_trust):
    fed, instance, client, admin = node_without_trust
    (instance / "gateway.toml").write_text("node = [unfinished\n")  # edited since the start
    answer = client.post(
        f"/api/v1/admin/trust-list?anchor={fed.anchor}", headers=admin, data=fed.trust_wire
    )
    assert (answer.status_code, answer.get_json()["error"]) == (500, "trust-anchor-not-pinned")
    assert client.get("/api/v1/admin/trust-list", headers=admin).status_code != 200


def test_pinning_fills_an_empty_anchor_line_and_keeps_the_comments(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('# KZ node\nnode = "KZ"\ntrust_anchor = ""  # from the administrators\n')
    config.pin_trust_anchor(tmp_path, "ab" * 32)
    assert path.read_text() == (
        f'# KZ node\nnode = "KZ"\ntrust_anchor = "{"ab" * 32}"  # from the administrators\n'
    )
    assert load_settings(tmp_path).trust_anchor == "ab" * 32


def test_pinning_keeps_the_files_mode_owner_and_link(tmp_path):
    real = tmp_path / "etc" / "kz.toml"
    real.parent.mkdir()
    real.write_text('node = "KZ"\n')
    real.chmod(0o640)
    link = tmp_path / "gateway.toml"
    link.symlink_to(real)
    other = os.geteuid() + 4242 if os.geteuid() == 0 else None
    if other is not None:  # only root may give a file away; the suite runs as root in CI
        os.chown(real, other, other)
    config.pin_trust_anchor(tmp_path, "cd" * 32)
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text() == f'node = "KZ"\ntrust_anchor = "{"cd" * 32}"\n'
    status = real.stat()
    assert status.st_mode & 0o7777 == 0o640
    if other is not None:
        assert (status.st_uid, status.st_gid) == (other, other)


def test_pinning_does_not_follow_a_link_another_account_made(tmp_path, monkeypatch):
    """A gateway.toml the node's account replaced with a link to a system file must not
    lead root (installing version 1 with its anchor) to write that file."""
    victim = tmp_path / "etc" / "shadow"
    victim.parent.mkdir()
    victim.write_text('node = "KZ"\n')
    link = tmp_path / "gateway.toml"
    link.symlink_to(victim)
    if os.geteuid() == 0:  # the suite in CI: the link is another account's
        os.lchown(link, 4242, 4242)
    else:
        made_by = os.lstat(link).st_uid
        monkeypatch.setattr(keys.sealed.os, "geteuid", lambda: made_by + 1)
    with pytest.raises(PermissionError, match="symbolic link of another account"):
        config.pin_trust_anchor(tmp_path, "cd" * 32)
    assert victim.read_text() == 'node = "KZ"\n' and link.is_symlink()


def test_pinning_a_file_of_another_user_rewrites_it_in_place(tmp_path, monkeypatch):
    path = tmp_path / "gateway.toml"
    path.write_text('node = "KZ"\n')
    path.chmod(0o644)
    before = path.stat().st_ino

    def may_not_give_away(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(keys.sealed.os, "fchown", may_not_give_away)
    config.pin_trust_anchor(tmp_path, "ef" * 32)
    assert path.stat().st_ino == before  # the same file, so its owner is kept
    assert path.stat().st_mode & 0o7777 == 0o644
    assert load_settings(tmp_path).trust_anchor == "ef" * 32


class _BrokenChunks(io.BytesIO):
    """A server's input stream for a chunked body it cannot read: ``error`` is what
    its reads raise (gunicorn raises ``InvalidChunkSize`` for a chunk size that is not
    hex; a stream cut short raises an ``OSError``, which werkzeug's wrapper turns into
    ``ClientDisconnected``)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def read(self, *_: object) -> bytes:
        raise self.error

    readline = read

    def readinto(self, _: object) -> int:
        raise self.error


@pytest.mark.parametrize(
    "error", [InvalidChunkSize(b"zz"), OSError("cut short")], ids=["bad-size", "cut-short"]
)
@pytest.mark.parametrize(
    ("path", "role", "status", "code"),
    [
        ("/xb1/envelopes", None, 400, "malformed"),
        ("/api/v1/messages", "agency", 400, "bad-body"),
        ("/api/v1/admin/trust-list", "admin", 400, "bad-body"),
        ("/api/v1/admin/trust-list/fetch", "admin", 400, "bad-body"),
        ("/api/v1/admin/suspensions", "admin", 400, "bad-body"),
    ],
)
def test_a_chunked_body_the_server_cannot_read_is_a_400_not_a_500(
    node_with_roles, path, role, status, code, error
):
    _, kz, auth = node_with_roles
    answer = kz.client().post(
        path,
        headers={**(auth[role] if role else {}), "Transfer-Encoding": "chunked"},
        content_type="application/json",
        input_stream=_BrokenChunks(error),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert (answer.status_code, answer.get_json()["error"]) == (status, code), answer.get_data()
    assert "chunks" in answer.get_json()["message"]
    if path == "/xb1/envelopes":  # a refusal of the peer API is recorded, as every one is
        with kz.node.sessions() as session:
            [rejection] = list_rejections(session)
        assert rejection.code == "malformed"


@pytest.mark.parametrize(
    ("method", "path", "role", "body", "status", "code"),
    [
        ("get", "/xb1/proofs/inclusion?index=%C2%B2&size=1", None, None, 422, "bad-parameter"),
        ("get", "/xb1/proofs/consistency?old=%C2%B3&new=5", None, None, 422, "bad-parameter"),
        ("get", "/xb1/witness/%00", None, None, 404, "not-found"),
        ("get", "/xb1/witness/kz", None, None, 404, "not-found"),
        ("post", "/api/v1/admin/tokens/9223372036854775808/revoke", "admin", None, 404, None),
        ("post", "/api/v1/admin/tokens/2147483648/revoke", "admin", None, 404, None),
        (
            "post",
            "/api/v1/admin/tokens",
            "admin",
            r'{"holder":"kz-police","label":"\ud800"}',
            422,
            "bad-label",
        ),
        (
            "post",
            "/api/v1/admin/tokens",
            "admin",
            '{"holder":"kz-police","label":"a\\nb"}',
            422,
            "bad-label",
        ),
        (
            "post",
            "/api/v1/admin/tokens",
            "admin",
            '{"holder":"kz-police","label":"\u202eab"}',
            422,
            "bad-label",
        ),
        (
            "post",
            "/api/v1/admin/users",
            "admin",
            r'{"name":"c.d","full_name":"C\ud800","agency":"kz-police","role":"officer","by":"me"}',
            422,
            "bad-user",
        ),
        (
            "post",
            "/api/v1/admin/suspensions",
            "admin",
            r'{"scope":"node","value":"KG","reason":"x\ud800","by":"me"}',
            422,
            "reason-required",
        ),
        ("post", "/api/v1/admin/tokens", "admin", r'{"user":"\ud800"}', 404, "no-such-user"),
        (
            "post",
            "/api/v1/admin/suspensions",
            "admin",
            '{"scope":"node","value":"KG","reason":"x","by":""}',
            422,
            "who-required",
        ),
        (
            "post",
            "/api/v1/admin/suspensions",
            "admin",
            '{"scope":"node","value":"KG","reason":"x","by":"   "}',
            422,
            "who-required",
        ),
        ("post", "/api/v1/admin/trust-list/fetch", "admin", "[" * 10_000, 400, "bad-json"),
        ("post", "/api/v1/admin/trust-list/fetch", "admin", "[1]", 400, "bad-json"),
    ],
)
def test_odd_parameters_and_fields_are_refused_not_500(
    node_with_roles, method, path, role, body, status, code
):
    """Inputs a hunt for 500s found: digits that are not ASCII, a NUL where a node id
    goes, ids beyond the integers the database holds, lone surrogates, line breaks and
    bidirectional overrides in a label or a name, a body nested past the JSON parser."""
    _, kz, auth = node_with_roles
    answer = getattr(kz.client(), method)(
        path,
        headers=auth[role] if role else {},
        data=body.encode("utf-8", "surrogatepass") if body is not None else None,
        content_type="application/json",
    )
    assert answer.status_code == status, answer.get_data()
    assert answer.get_json()["error"] == (code or "no-such-token")


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"holder": "KZ NGO"}, "bad-agency", "lowercase letters"),
        ({"holder": "kz-ngo", "role": "superuser"}, "bad-role", "role must be one of"),
        ({"holder": "kz-ngo", "role": ["x"]}, "bad-role", "role must be one of"),
        ({"holder": "kz-ngo", "role": "officer"}, "bad-role", "belongs to a person"),
        # A misspelt member is no default: "rol" would have issued an agency token.
        ({"holder": "kz-ops", "rol": "admin"}, "bad-field", "unknown field 'rol'"),
        ({"holder": "kz-ops", "lable": "x"}, "bad-field", "expected holder (and role"),
        ({"user": "a.seitkali", "role": "admin"}, "bad-field", "without holder and role"),
        ({"user": "a.seitkali", "holder": "kz-ops"}, "bad-field", "without holder and role"),
    ],
)
def test_a_token_request_is_refused_for_what_is_wrong_with_it(node_with_roles, body, code, says):
    """Each refusal of a token request says what is wrong with it, as a 422, and
    issues nothing."""
    _, kz, auth = node_with_roles
    answer = kz.client().post("/api/v1/admin/tokens", headers=auth["admin"], json=body)
    assert (answer.status_code, answer.get_json()["error"]) == (422, code), answer.get_json()
    assert says in answer.get_json()["message"]
    listed = kz.client().get("/api/v1/admin/tokens", headers=auth["admin"]).get_json()
    assert len(listed["tokens"]) == 3


_BY = {"by": "A. Seitkali"}


@pytest.mark.parametrize(
    ("path", "body", "unknown"),
    [
        ("/api/v1/admin/trust-list/fetch", {"form": "KG"}, "form"),
        (
            "/api/v1/admin/suspensions",
            {"scope": "node", "value": "KG", "reason": "x", **_BY, "until": "2027-01-01"},
            "until",
        ),
        ("/api/v1/admin/suspensions/1/lift", {"reason": "x", **_BY, "id": 1}, "id"),
        ("/api/v1/admin/quarantine/1/release", {"reason": "x", **_BY, "note": "y"}, "note"),
        ("/api/v1/admin/tokens/1/revoke", {**_BY, "reason": "x"}, "reason"),
        (
            "/api/v1/admin/users",
            {
                "name": "a.b",
                "full_name": "A B",
                "agency": "kz-police",
                "role": "officer",
                **_BY,
                "password": "x",
            },
            "password",
        ),
        ("/api/v1/admin/users/a.b/disable", {"reason": "x", **_BY, "user": "a.b"}, "user"),
    ],
)
def test_a_member_an_admin_call_does_not_take_is_refused(node_with_roles, path, body, unknown):
    """Deny by default: a member nobody reads is refused and named, never passed over
    while the call goes on without it (nothing changes)."""
    _, kz, auth = node_with_roles
    with kz.node.sessions() as session:
        before = session.scalar(select(func.count()).select_from(AuditEntry))
    answer = kz.client().post(path, headers=auth["admin"], json=body)
    assert (answer.status_code, answer.get_json()["error"]) == (422, "bad-field")
    assert f"unknown field {unknown!r}" in answer.get_json()["message"]
    with kz.node.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == before


def test_a_change_refused_to_a_reading_role_names_that_role(node_with_roles):
    _, kz, auth = node_with_roles
    body = {"scope": "node", "value": "KG", "reason": "r", "by": "me"}
    answer = kz.client().post("/api/v1/admin/suspensions", headers=auth["observer"], json=body)
    assert (answer.status_code, answer.get_json()["error"]) == (403, "wrong-role")
    assert "of role observer" in answer.get_json()["message"]


@pytest.mark.parametrize(
    ("path", "role"),
    [("/api/v1/messages", "agency"), ("/api/v1/admin/trust-list", "admin")],
)
def test_a_chunked_body_over_the_limit_is_too_large_not_cut(node_with_roles, path, role):
    """A chunked body (no Content-Length) is read only up to the size limit; one that
    reaches it is refused as too large, not parsed as if the part read were all."""
    _, kz, auth = node_with_roles
    limit = kz.node.settings.max_envelope_bytes + 4096
    answer = kz.client().post(
        path,
        headers={**auth[role], "Transfer-Encoding": "chunked"},
        content_type="application/json",
        input_stream=io.BytesIO(b'{"typ": "' + b"x" * limit + b'"}'),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert (answer.status_code, answer.get_json()["error"]) == (413, "too-large")


def test_an_envelope_whose_body_breaks_off_is_refused_and_recorded(node_with_roles):
    """A connection reset while the announced body is read: 400 malformed, recorded."""
    _, kz, _ = node_with_roles
    answer = kz.client().post(
        "/xb1/envelopes",
        content_type="application/xb1+json",
        input_stream=_BrokenChunks(ConnectionResetError("reset by peer")),
        environ_overrides={"CONTENT_LENGTH": "100"},
    )
    assert (answer.status_code, answer.get_json()["error"]) == (400, "malformed")
    with kz.node.sessions() as session:
        [rejection] = list_rejections(session)
    assert (rejection.code, rejection.size) == ("malformed", 100)


def test_a_reason_over_several_lines_is_kept(node_with_roles):
    """Line breaks (a form's CRLF too) and tabs are text in a reason; only other
    control characters are refused."""
    _, kz, auth = node_with_roles
    reason = "agreement paused\r\nby the ministry\tpending review"
    answer = kz.client().post(
        "/api/v1/admin/suspensions",
        headers=auth["admin"],
        json={"scope": "node", "value": "KG", "reason": reason, "by": "duty officer"},
    )
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["reason"] == reason


def test_issuing_and_revoking_a_token_records_who_asked(node_with_roles):
    """The calling token always, and the name given as ``by``."""
    import json as json_module

    from sqlalchemy import select

    from gateway.models import AuditEntry

    _, kz, auth = node_with_roles
    client = kz.client()
    made = client.post(
        "/api/v1/admin/tokens",
        headers=auth["admin"],
        json={"holder": "kz-x", "role": "admin", "by": "A. Admin"},
    )
    assert made.status_code == 201, made.get_json()
    token_id = made.get_json()["id"]
    revoked = client.post(f"/api/v1/admin/tokens/{token_id}/revoke", headers=auth["admin"])
    assert revoked.status_code == 200, revoked.get_json()
    with kz.node.sessions() as session:
        entries = {
            e["kind"]: e
            for e in (
                json_module.loads(raw)
                for raw in session.scalars(
                    select(AuditEntry.entry).where(
                        AuditEntry.kind.in_(["token-issued", "token-revoked"])
                    )
                )
            )
            if e["token"] == token_id
        }
    assert entries["token-issued"]["by"].startswith("A. Admin (admin token ")
    assert entries["token-revoked"]["by"].startswith("admin token ")
    assert "kz-ops" in entries["token-revoked"]["by"]


def test_a_name_within_the_limit_the_refusal_states_is_accepted(node_with_roles):
    """The admin API records `by` with the calling token added; the limit it states
    for `by` is the one that holds (not 200, which the addition would exceed)."""
    import re

    _, kz, auth = node_with_roles
    body = {"scope": "node", "value": "KG", "reason": "r", "by": "x" * 200}
    refused = kz.client().post("/api/v1/admin/suspensions", headers=auth["admin"], json=body)
    assert (refused.status_code, refused.get_json()["error"]) == (422, "who-required")
    limit = int(re.search(r"up to (\d+) characters", refused.get_json()["message"])[1])
    assert 100 < limit < 200
    body["by"] = "x" * limit
    accepted = kz.client().post("/api/v1/admin/suspensions", headers=auth["admin"], json=body)
    assert accepted.status_code == 201, accepted.get_json()
