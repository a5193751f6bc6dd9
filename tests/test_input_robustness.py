"""Bad input, wherever an operator or an administrator can give it, ends as one clear
error (a stable code and a sentence), never a traceback, and writes nothing half-made:
``gateway.toml`` values with control characters, database URLs with drivers the node
cannot use, numbers too large to use, policy files with members of the wrong type or
not in UTF-8, and admin input files holding a JSON scalar instead of an object."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway import config
from gateway.cli import main
from gateway.config import MAXIMUM, MINIMUM, Settings, load_settings, write_instance_file
from gateway.errors import ConfigError
from gateway.policy import parse
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.proposal import (
    AddAdmin,
    AddKey,
    AddNode,
    AdminKey,
    Proposal,
    ProposalError,
    RetireKey,
    bootstrap,
    propose,
    sign,
)
from keys.trustlist import TrustList, key_entry, node_entry
from tests.test_cli import refused

DAY = 86400
YEAR = 365 * DAY


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GATEWAY_* variable of the shell running the tests must not decide them."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def gateway(*args: str | Path, instance: Path | None = None) -> Result:
    before = ["--instance", str(instance)] if instance is not None else []
    return CliRunner().invoke(main, [*before, *map(str, args)], prog_name="gateway")


def config_error(code: str, instance: Path, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(instance, **overrides)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


def with_toml(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gateway.toml").write_text(f'node = "KZ"\n{text}\n', encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def node_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One unsealed node made by ``init``; tests that change its files restore them."""
    instance = tmp_path_factory.mktemp("node") / "kz"
    result = gateway("init", "--node", "KZ", "--unsealed", instance=instance)
    assert result.exit_code == 0, (result.output, result.exception)
    return instance


# ---------------------------------------------------------------------------- 1. gateway.toml


CONTROLS = "".join(chr(c) for c in range(0x20)) + "\x7f"


def test_write_instance_file_escapes_every_control_character(tmp_path: Path) -> None:
    written = {
        "node": "KZ",
        "key_passphrase": f'a{CONTROLS}"\\ é\u2028 end',
        "office_hours": "08-19\n",
        "trust_anchor": "ab" * 32,
    }
    path = write_instance_file(tmp_path, written)
    assert (
        tomllib.loads(path.read_text(encoding="utf-8"))["key_passphrase"]
        == (written["key_passphrase"])
    )
    assert "\\b" in path.read_text() and "\\u0000" in path.read_text()
    assert "\\u007F" in path.read_text() and "\\u001B" in path.read_text()
    settings = load_settings(tmp_path)
    assert settings.key_passphrase == written["key_passphrase"]
    assert settings.office_hours == "08-19\n"


@pytest.mark.parametrize(
    ("values", "code", "named"),
    [
        ({"key_file": "/srv/keys\n.json"}, "config-value", "key_file"),
        ({"database_url": "sqlite:////srv/gw\n.db"}, "config-database", "database_url"),
        ({"dispatch_batch": 10**20}, "config-value", "dispatch_batch"),
        ({"backoff_cap": 1e300}, "config-value", "backoff_cap"),
        ({"peer_timeout": float("nan")}, "config-value", "peer_timeout"),
        ({"peer_timeout": 40.0}, "config-lease", "dispatch_lease"),
        ({"clock_skew": "soon"}, "config-value", "clock_skew"),
        ({"node": 7}, "config-value", "node"),
        ({"node": "kz"}, "config-node", "KZ-MVD"),
        ({"timezone": "Mars/Olympus"}, "config-timezone", "Mars/Olympus"),
        ({"peer_timout": 3}, "config-unknown", "peer_timout"),
        ({"instance": "/elsewhere"}, "config-unknown", "instance"),
        ({"key_file": "/srv/\udcff.json"}, "config-value", "key_file"),
    ],
)
def test_write_instance_file_refuses_what_reading_would_refuse(
    tmp_path: Path, values: dict[str, Any], code: str, named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        write_instance_file(tmp_path, {"node": "KZ", **values})
    assert caught.value.code == code and named in caught.value.message
    assert not (tmp_path / "gateway.toml").exists()


def test_init_refuses_a_database_url_with_a_newline_before_writing(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    url = f"sqlite:///{tmp_path}/gw\n.db"
    result = gateway("init", "--node", "KZ", "--unsealed", "--database-url", url, instance=instance)
    assert "control character" in refused(result, "config-database")
    assert not instance.exists()


def test_anchor_pinned_by_trust_install_keeps_escaped_values(tmp_path: Path) -> None:
    """``gateway trust install --anchor`` rewrites gateway.toml: values with escapes
    survive the round trip."""
    passphrase = 'pass\tphrase "quoted" \\ \x1b'
    write_instance_file(tmp_path, {"node": "KZ", "key_passphrase": passphrase})
    values = tomllib.loads((tmp_path / "gateway.toml").read_text(encoding="utf-8"))
    values["trust_anchor"] = "cd" * 32
    write_instance_file(tmp_path, values)
    settings = load_settings(tmp_path)
    assert (settings.key_passphrase, settings.trust_anchor) == (passphrase, "cd" * 32)


# ---------------------------------------------------------------------------- 2. database drivers


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://gw@db.example/kz",
        "postgresql+pg8000://gw@db.example/kz",
        "postgresql+psycopg2://gw@db.example/kz",
        "sqlite+aiosqlite:////srv/kz.db",
    ],
)
def test_database_driver_the_node_cannot_use(tmp_path: Path, url: str) -> None:
    message = config_error("config-database", with_toml(tmp_path, f'database_url = "{url}"'))
    assert "postgresql://" in message and "sqlite:///" in message
    assert url.split("://")[0] in message


def test_init_refuses_an_unsupported_driver(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    url = "postgresql+asyncpg://gw@127.0.0.1:1/kz"
    result = gateway("init", "--node", "KZ", "--unsealed", "--database-url", url, instance=instance)
    assert "postgresql://" in refused(result, "config-database")
    assert not instance.exists()


def test_postgresql_without_its_driver_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config, "_driver_installed", lambda module: module != "psycopg")
    folder = with_toml(tmp_path, 'database_url = "postgresql://gw@db.example/kz"')
    assert "postgres extra" in config_error("config-database", folder)
    assert load_settings(folder, database_url=f"sqlite:///{tmp_path}/kz.db").node == "KZ"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://", "in-memory"),
        ("sqlite:///file:kz.db?mode=memory&uri=true", "in-memory"),
        ("sqlite:///file::memory:?uri=true", "in-memory"),
        ("sqlite:///file::memory:?cache=shared&uri=true", "in-memory"),
        ("sqlite:////srv/kz.db?vfs=memdb&uri=true", "in-memory"),
        ("sqlite:///file:kz.db?uri=true", "relative path 'kz.db'"),
        ("sqlite:///file:/srv/kz.db%3Fmode%3Dmemory?uri=true", "in-memory"),
        ("sqlite:///file:/srv/kz.db%3Fvfs%3Dmemdb?uri=true", "in-memory"),
        ("sqlite:////srv/kz.db?uri=maybe", "uri= must be given once, true or false"),
        ("sqlite:///file:/srv/kz.db?nolock=1&uri=true", "locking off"),
        ("sqlite:///file:/srv/kz.db?vfs=unix-none&uri=true", "locking off"),
        ("sqlite:////srv/kz.db?uri=true&uri=false", "uri= must be given once"),
        ("sqlite:///gateway.db", "relative path 'gateway.db'"),
        ("sqlite:///data/kz.db", "relative path 'data/kz.db'"),
        ("postgresql://", "names no database"),
        ("postgresql://gw@db.example", "names no database"),
        ("postgresql://gw@db.example:abc/kz", "is not a database URL"),
        ("postgresql://gw@[::1/kz", "is not a database URL"),
    ],
)
def test_a_database_that_would_not_keep_the_node_is_refused(
    tmp_path: Path, url: str, said: str
) -> None:
    """A database that keeps nothing (in memory), that depends on the folder a command
    runs in (a relative path: another folder would get a new, empty one), or that is no
    database the node names (the server's default; a port that is not a number)."""
    message = config_error("config-database", with_toml(tmp_path, f'database_url = "{url}"'))
    assert said in message


def test_init_refuses_a_relative_database_path_before_writing(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    result = gateway(
        "init", "--node", "KZ", "--unsealed", "--database-url", "sqlite:///kz.db", instance=instance
    )
    assert "absolute path" in refused(result, "config-database")
    assert not instance.exists()


def test_toml_nested_too_deeply_is_a_clear_error(tmp_path: Path) -> None:
    """Python's TOML reader recurses per level: a file nested hundreds deep is refused
    as a bad file, not a RecursionError (a traceback, a 500, a dead dispatcher)."""
    from gateway import policy

    deep = "x = " + "[" * 2000 + "]" * 2000
    assert "too deeply" in config_error("config-file", with_toml(tmp_path / "config", deep))
    folder = with_toml(tmp_path / "policy", "")
    (folder / policy.POLICY_FILE).write_text(f"version = 1\n{deep}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        policy.load(folder)
    assert caught.value.code == "policy-invalid" and "too deeply" in caught.value.message


def test_a_relative_key_file_is_refused(tmp_path: Path) -> None:
    message = config_error("config-value", with_toml(tmp_path, 'key_file = "keys.json"'))
    assert "relative path" in message and str(tmp_path) in message
    with pytest.raises(ConfigError) as caught:  # and not written in the first place
        write_instance_file(tmp_path / "other", {"node": "KZ", "key_file": "keys.json"})
    assert caught.value.code == "config-value"
    assert not (tmp_path / "other" / "gateway.toml").exists()


def test_supported_database_url_forms_are_accepted(tmp_path: Path) -> None:
    for url in (
        f"sqlite:///{tmp_path}/a.db",
        f"sqlite+pysqlite:///{tmp_path}/b.db",
        "postgresql://gw@db.example/kz",
        "postgresql+psycopg://gw@db.example/kz",
        "postgresql://gw@db.example/?dbname=kz",
        "postgresql://?service=xb1",
        f"sqlite:///file:{tmp_path}/c.db?mode=rwc&uri=true",
        f"sqlite:///file:{tmp_path}/d.db?uri=yes",
    ):
        assert load_settings(with_toml(tmp_path, f'database_url = "{url}"')).database_url == url


# ---------------------------------------------------------------------------- 3. upper bounds


NUMERIC = sorted(MAXIMUM)
FLOATS = {f.name for f in fields(Settings) if "float" in str(f.type)}


def test_every_numeric_setting_has_both_bounds() -> None:
    numeric = {f.name for f in fields(Settings) if re.match(r"(int|float)\b", str(f.type))}
    assert numeric == set(MAXIMUM) == set(MINIMUM)


@pytest.mark.parametrize("name", NUMERIC)
def test_numbers_too_large_to_use_are_refused(tmp_path: Path, name: str) -> None:
    huge = ["99999999999999999999"] + (["1e300", "1.7e308"] if name in FLOATS else [])
    for value in huge:
        message = config_error("config-value", with_toml(tmp_path, f"{name} = {value}"))
        assert name in message and f"GATEWAY_{name.upper()}" in message
        assert f"to {MAXIMUM[name]:.0f}" in message


@pytest.mark.parametrize("name", NUMERIC)
def test_the_largest_allowed_value_is_accepted(tmp_path: Path, name: str) -> None:
    extra = f"{name} = {MAXIMUM[name]:.0f}"
    if name == "peer_timeout":
        extra += "\ndispatch_lease = 86400"
    if name == "message_ttl":
        extra += f"\nmax_ttl = {MAXIMUM['max_ttl']:.0f}"
    assert getattr(load_settings(with_toml(tmp_path, extra)), name) == MAXIMUM[name]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_DISPATCH_BATCH", "99999999999999999999"),
        ("GATEWAY_DISPATCH_LEASE", "99999999999999999999"),
        ("GATEWAY_PURGE_NOTICE_DAYS", "99999999999999999999"),
        ("GATEWAY_BACKOFF_BASE", "1e300"),
        ("GATEWAY_BACKOFF_CAP", "1e300"),
        ("GATEWAY_DISPATCH_INTERVAL", "1e300"),
    ],
)
def test_numbers_too_large_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    message = config_error("config-value", with_toml(tmp_path, ""))
    assert variable in message and "a value from" in message


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_toml_infinity_and_nan_are_refused(tmp_path: Path, value: str) -> None:
    assert "backoff_base" in config_error(
        "config-value", with_toml(tmp_path, f"backoff_base = {value}")
    )


def test_command_refuses_a_huge_setting(node_folder: Path) -> None:
    toml = node_folder / "gateway.toml"
    before = toml.read_text(encoding="utf-8")
    try:
        toml.write_text(before + "backoff_cap = 1e300\n", encoding="utf-8")
        result = gateway("dispatch", "--until-idle", instance=node_folder)
        assert "backoff_cap" in refused(result, "config-value")
    finally:
        toml.write_text(before, encoding="utf-8")


# ---------------------------------------------------------------------------- 4. control characters


@pytest.mark.parametrize("char", ["\\u0000", "\\n", "\\u001B", "\\u007F"])
def test_control_character_in_the_key_file_path(tmp_path: Path, char: str) -> None:
    message = config_error("config-value", with_toml(tmp_path, f'key_file = "/srv/k{char}.json"'))
    assert "key_file" in message and "control characters" in message


@pytest.mark.parametrize("char", ["\\u0000", "\\n", "\\t"])
def test_control_character_in_the_database_url(tmp_path: Path, char: str) -> None:
    folder = with_toml(tmp_path, f'database_url = "postgresql://gw:secret@db/k{char}z"')
    message = config_error("config-database", folder)
    assert "control character" in message and "secret" not in message


def test_nul_in_the_instance_folder(tmp_path: Path) -> None:
    assert "control character" in config_error("config-file", Path(f"{tmp_path}/a\x00b"))


def test_command_with_a_nul_in_the_key_file_path(node_folder: Path) -> None:
    toml = node_folder / "gateway.toml"
    before = toml.read_text(encoding="utf-8")
    try:
        toml.write_text(before + 'key_file = "/srv/keys\\u0000.json"\n', encoding="utf-8")
        message = refused(gateway("keys", "show", instance=node_folder), "config-value")
        assert "key_file" in message
    finally:
        toml.write_text(before, encoding="utf-8")


# ---------------------------------------------------------------------------- 5. policy types

AGREEMENT = "[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alert/1']\n"
AGENCY = (
    "[[agency]]\nid = 'kz-police'\ntype = 'police'\n"
    "[[agency]]\nid = 'kz-mvd'\ntype = 'central-authority'\n"
)
ROUTE = "[[route]]\nid = 'r'\ntypes = ['alert/1']\nagencies = ['kz-police']\n"
MINIMISE = "[[minimise]]\nid = 'm'\naudience = ['ngo']\ndrop = ['channels']\n"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("version = 1.0", "version = 1"),
        ("version = true", "version = 1"),
        ("version = '1'", "version = 1"),
        ("version = [1]", "version = 1"),
        ("version = 1\nagreement = 5", "agreement"),
        ("version = 1\nagreement = true", "agreement"),
        ("version = 1\nagreement = 'KG'", "agreement"),
        ("version = 1\nagreement = [1, 2]", "agreement #1"),
        ("version = 1\n[agreement]\nid = 'a'", "[[agreement]]"),
        ("version = 1\n[agreement]\n", "[[agreement]]"),
        ("version = 1\nminimise = 5", "minimise"),
        ("version = 1\nminimise = {}", "[[minimise]]"),
        ("version = 1\nagency = 5", "agency"),
        ("version = 1\nagency = [5]", "agency #1"),
        ("version = 1\nroute = 'r'", "route"),
        ("version = 1\nroute = [true]", "route #1"),
        ("version = 1\nretention = 5", "[retention]"),
        ("version = 1\n" + AGREEMENT, None),
        ("version = 1\n" + AGREEMENT.replace("id = 'a'", "id = 5"), "needs an id"),
        ("version = 1\n" + AGREEMENT.replace("peer = 'KG'", "peer = 5"), "peer"),
        ("version = 1\n" + AGREEMENT.replace("['alert/1']", "5"), "types"),
        ("version = 1\n" + AGREEMENT.replace("['alert/1']", "'alert/1'"), "types"),
        ("version = 1\n" + AGREEMENT + "purposes = 5\n", "purposes"),
        ("version = 1\n" + AGREEMENT + "purposes = [5]\n", "purposes"),
        ("version = 1\n" + AGREEMENT + "direction = 5\n", "direction"),
        ("version = 1\n" + AGREEMENT + "direction = ['send']\n", "direction"),
        ("version = 1\n" + AGREEMENT + "until = 5\n", "until"),
        ("version = 1\n" + MINIMISE.replace("['ngo']", "5"), "audience"),
        ("version = 1\n" + MINIMISE.replace("['channels']", "true"), "drop"),
        ("version = 1\n" + MINIMISE + "types = 5\n", "types"),
        ("version = 1\n" + AGENCY.replace("'police'", "5"), "type"),
        ("version = 1\n" + AGENCY + "name = 5\n", "name"),
        ("version = 1\n" + AGENCY + ROUTE.replace("['kz-police']", "5"), "agencies"),
        ("version = 1\n" + AGENCY + ROUTE + "regions = 5\n", "regions"),
        ("version = 1\n" + AGENCY + ROUTE + "kinds = {a = 1}\n", "kinds"),
        ("version = 1\n[retention]\n'alert/1' = 1.5\n", "whole number"),
        ("version = 1\n[retention]\n'alert/1' = {days = 3}\n", "whole number"),
    ],
)
def test_policy_member_of_the_wrong_type(text: str, named: str | None) -> None:
    if named is None:  # the well-formed file the others are variations of
        assert parse(text, Path("policy.toml")).agreements[0].id == "a"
        return
    with pytest.raises(ConfigError) as caught:
        parse(text, Path("policy.toml"))
    assert caught.value.code == "policy-invalid"
    assert named in caught.value.message and "policy.toml" in caught.value.message


def test_policy_commands_refuse_a_wrong_type(tmp_path: Path, node_folder: Path) -> None:
    bad = tmp_path / "bad-policy.toml"
    bad.write_text("version = 1\nagreement = 5\n", encoding="utf-8")
    assert "agreement" in refused(gateway("policy", "check", bad), "policy-invalid")
    shown = tmp_path / "shown"
    shown.mkdir()
    (shown / "policy.toml").write_text("version = true\n", encoding="utf-8")
    assert "version = 1" in refused(gateway("policy", "show", instance=shown), "policy-invalid")
    policy = node_folder / "policy.toml"
    try:
        policy.write_text("version = 1\nminimise = 5\n", encoding="utf-8")
        assert "minimise" in refused(
            gateway("purge", "--dry-run", instance=node_folder), "policy-invalid"
        )
    finally:
        policy.unlink()


# ---------------------------------------------------------------------------- 6. policy encoding


def test_policy_check_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"version = 1\n# caf\xe9\n")
    checked = refused(gateway("policy", "check", path), "policy-invalid")
    assert "UTF-8" in checked and str(path) in checked
    shown = refused(gateway("policy", "show", instance=tmp_path), "policy-invalid")
    assert "UTF-8" in shown


def test_policy_check_of_a_missing_file(tmp_path: Path) -> None:
    message = refused(gateway("policy", "check", tmp_path / "nothing.toml"), "file-not-found")
    assert "nothing.toml" in message


# ---------------------------------------------------------------------------- 7. admin input

T0 = int(time.time())


def admin_key(name: str) -> AdminKey:
    return AdminKey(f"admin of {name}", SigningKeyPair(hashlib.sha256(name.encode()).digest()))


def node_json(node: str) -> dict[str, Any]:
    ring = NodeKeys.deterministic(node, b"robustness", created=T0 - DAY)
    return node_entry(
        node,
        f"State {node}",
        f"https://xb1.{node.lower()}.example",
        ring.current_signing,
        ring.current_encryption,
        not_before=T0 - DAY,
        not_after=T0 + 2 * YEAR,
    )


def write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@pytest.fixture
def admin_files(tmp_path: Path) -> dict[str, Path]:
    """A valid admin public file and node entry, a signed version 1, and files holding
    JSON scalars."""
    admin = admin_key("KZ")
    v1 = bootstrap("ca", [admin.entry()], 1, [node_json("KZ")], T0 - 60, T0 + YEAR)
    return {
        "admin": write(tmp_path / "kz.pub.json", admin.entry()),
        "node": write(tmp_path / "kz-entry.json", node_json("KZ")),
        "v1": write(tmp_path / "v1.json", json.loads(sign(v1, admin))),
        "string": write(tmp_path / "string.json", "x"),
        "number": write(tmp_path / "number.json", 5),
        "list": write(tmp_path / "list.json", [node_json("KG")]),
        "null": write(tmp_path / "null.json", None),
    }


@pytest.mark.parametrize("scalar", ["string", "number", "list", "null"])
@pytest.mark.parametrize("option", ["--admin", "--node"])
def test_bootstrap_with_a_json_scalar(
    tmp_path: Path, admin_files: dict[str, Path], option: str, scalar: str
) -> None:
    files = {"--admin": admin_files["admin"], "--node": admin_files["node"]}
    files[option] = admin_files[scalar]
    out = tmp_path / "proposal.json"
    result = gateway(
        "admin", "bootstrap", "--federation", "ca", "--threshold", "1",
        "--admin", files["--admin"], "--node", files["--node"], "--out", out,
    )  # fmt: skip
    message = refused(result, "proposal-bad-entry")
    assert "JSON object" in message
    assert not out.exists()


@pytest.mark.parametrize("scalar", ["string", "number", "null"])
@pytest.mark.parametrize("option", [["--add-node"], ["--add-admin"], ["--add-key", "KZ"]])
def test_propose_with_a_json_scalar(
    tmp_path: Path, admin_files: dict[str, Path], option: list[str], scalar: str
) -> None:
    out = tmp_path / "v2.json"
    result = gateway(
        "admin", "propose", "--current", admin_files["v1"], *option, admin_files[scalar],
        "--out", out,
    )  # fmt: skip
    assert "JSON object" in refused(result, "proposal-bad-entry")
    assert not out.exists()


def test_proposal_changes_refuse_entries_that_are_not_objects() -> None:
    admin = admin_key("KZ")
    v1_wire = sign(bootstrap("ca", [admin.entry()], 1, [node_json("KZ")], T0, T0 + YEAR), admin)
    current = TrustList.from_anchor(v1_wire, hashlib.sha256(_raw(v1_wire)).digest(), T0)
    kid = next(k.kid for k in current.keys.keys_of("KZ") if k.use == "sig")
    changes: list[Any] = [
        AddNode("x"),  # type: ignore[arg-type]
        AddNode(5),  # type: ignore[arg-type]
        AddAdmin(["kid"]),  # type: ignore[arg-type]
        AddKey("KZ", "x"),  # type: ignore[arg-type]
        AddKey("KZ", None),  # type: ignore[arg-type]
        RetireKey(kid, not_after="tomorrow"),  # type: ignore[arg-type]
        RetireKey(kid, overlap=1.5),  # type: ignore[arg-type]
    ]
    for change in changes:
        with pytest.raises(ProposalError) as caught:
            propose(current, changes=[AddKey("KZ", _second_sig_key()), change], issued_at=T0 + 1)
        assert caught.value.code in ("proposal-bad-entry", "proposal-key-time"), change
    for bad in ("x", 5, None):
        with pytest.raises(ProposalError) as caught:
            bootstrap("ca", [admin.entry()], 1, [bad], T0, T0 + YEAR)  # type: ignore[list-item]
        assert caught.value.code == "proposal-bad-entry"
        assert "JSON object" in caught.value.message


def _raw(wire: bytes) -> bytes:
    return Proposal.from_wire(wire).raw


def _second_sig_key() -> dict[str, Any]:
    """A second active signing key of KZ, so that retiring the first is allowed."""
    return key_entry(SigningKeyPair(hashlib.sha256(b"KZ second").digest()).public, "sig")
