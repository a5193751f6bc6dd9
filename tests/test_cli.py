"""The ``gateway`` command as an operator meets it: init, keys, trust list, tokens,
outbox, inbox, dispatch, database, help texts and the demo. Every refusal must be one
line ``error [code]: sentence`` with exit status 2, never a traceback.

Fresh nodes made by ``init`` seal their keys with production argon2 limits (about a
second per sealed key operation), so only one test does that; the others use
``--unsealed`` nodes or the federation fixture's nodes (sealed with tiny limits).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, text

from gateway.cli import main
from gateway.config import load_settings
from gateway.models import Base
from keys.fingerprint import fingerprint
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.sealed import KeyFileError, UnsealedKeyWarning
from keys.trustlist import admin_entry, assemble, build_list, node_entry, sign_list
from schemas.examples import example_alert
from tests.conftest import PASSPHRASE, sqlite_only

OPERATOR_PASSPHRASE = "long operator passphrase for the test node"
KEY_LINE = re.compile(r"^  (sig|enc) ([0-9a-f]{32}) \[active\]\n      fingerprint ([0-9 ]+)$", re.M)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GATEWAY_* variable of the shell running the tests must not decide them."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


def gateway(instance: Path | str, *args: str, passphrase: str | None = None) -> Result:
    env = {"GATEWAY_KEY_PASSPHRASE": passphrase} if passphrase else {}
    return CliRunner().invoke(
        main, ["--instance", str(instance), *args], env=env, prog_name="gateway"
    )


def succeeded(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def refused(result: Result, code: str) -> str:
    """The command failed with exactly one ``error [code]: sentence`` line, exit 2."""
    assert "Traceback" not in result.output
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.startswith("error [")]
    assert len(lines) == 1, result.stderr
    match = re.fullmatch(r"error \[([a-z0-9-]+)\]: (.+)", lines[0])
    assert match and match.group(1) == code, result.stderr
    assert len(match.group(2).split()) >= 5, "a sentence a person can act on"
    return match.group(2)


def usage_error(result: Result, *words: str) -> None:
    """Refused by click's option checks: exit 2 and one ``error [usage]: …`` line
    naming the problem and the command's help, like every other error."""
    sentence = refused(result, "usage")
    assert "--help'" in sentence
    for word in words:
        assert word in sentence, result.stderr


def printed_keys(output: str) -> dict[str, tuple[str, str]]:
    """{use: (kid, fingerprint)} from the key lines of init and keys show."""
    found = {use: (kid, fp) for use, kid, fp in KEY_LINE.findall(output)}
    assert set(found) == {"sig", "enc"}, output
    return found


# ---------------------------------------------------------------------------- help


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_help_of_every_command() -> None:
    top = CliRunner().invoke(main, ["--help"], prog_name="gateway")
    assert top.exit_code == 0 and "Usage: gateway" in top.stdout
    commands = _commands(main)
    for name in ("init", "keys", "trust", "token", "outbox", "inbox", "dispatch", "db", "demo"):
        assert name in top.stdout and (name,) in commands
    assert len(commands) >= 20
    for path in commands:
        result = CliRunner().invoke(main, [*path, "--help"], prog_name="gateway")
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: gateway {' '.join(path)}" in result.stdout, result.stdout
        command: Any = main
        for name in path:
            command = command.commands[name]
        first_line = " ".join((command.help or "").split("\n\n")[0].split())
        assert first_line and first_line in " ".join(result.stdout.split()), path
        for param in command.params:  # every option says what it is for
            if isinstance(param, click.Option):
                assert param.help, (path, param.opts)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--bogus"], ("--bogus", "'gateway --help'")),
        (["nosuch"], ("nosuch", "'gateway --help'")),
        (["admin", "sign"], ("PROPOSAL", "'gateway admin sign --help'")),
        (["dispatch", "--once", "surplus"], ("surplus", "'gateway dispatch --help'")),
    ],
)
def test_a_command_line_click_cannot_parse_is_one_error_line(args, words) -> None:
    usage_error(CliRunner().invoke(main, args, prog_name="gateway"), *words)


# ---------------------------------------------------------------------------- init


def test_init_creates_a_sealed_node(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    output = succeeded(gateway(instance, "init", "--node", "KZ", passphrase=OPERATOR_PASSPHRASE))
    assert f"Node KZ created in {instance}" in output
    printed = printed_keys(output)

    settings = load_settings(instance)
    assert settings.node == "KZ"
    assert settings.database_url == f"sqlite:///{instance.resolve() / 'gateway.db'}"
    key_file = instance / "node-keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    stored = json.loads(key_file.read_bytes())
    assert stored["sealed"] is True and "seed" not in key_file.read_text()
    engine = create_engine(settings.database_url)
    with engine.connect() as connection:
        assert set(Base.metadata.tables) <= set(inspect(connection).get_table_names())
    engine.dispose()

    # The printed kids and fingerprints are those of the sealed ring.
    ring = NodeKeys.load(key_file, OPERATOR_PASSPHRASE)
    assert printed["sig"] == (ring.current_signing.kid, fingerprint(ring.current_signing.public))
    assert printed["enc"] == (
        ring.current_encryption.kid,
        fingerprint(ring.current_encryption.public),
    )

    before = (key_file.read_bytes(), (instance / "gateway.toml").read_bytes())
    again = gateway(instance, "init", "--node", "KZ", passphrase=OPERATOR_PASSPHRASE)
    assert "already holds a node" in refused(again, "already-initialised")
    assert (key_file.read_bytes(), (instance / "gateway.toml").read_bytes()) == before

    # Sealed keys without a passphrase and no terminal to ask on: a clear refusal.
    message = refused(gateway(instance, "keys", "show"), "key-file-passphrase")
    assert "GATEWAY_KEY_PASSPHRASE" in message


@pytest.mark.parametrize(
    ("options", "code", "hint"),
    [
        (["--node", "kz"], "config-node", "--node"),
        (["--node", "KAZ"], "config-node", "KZ-MVD"),
        (["--node", "KZ", "--trust-anchor", "abc"], "config-anchor", "--trust-anchor"),
        (["--node", "KZ", "--database-url", "mysql://gw@db/kz"], "config-database", "SQLite"),
    ],
)
def test_init_refuses_bad_options_before_writing_anything(
    tmp_path: Path, options: list[str], code: str, hint: str
) -> None:
    instance = tmp_path / "node"
    message = refused(gateway(instance, "init", *options, passphrase="x"), code)
    assert hint in message
    assert not instance.exists()


def test_a_table_dropped_by_hand_is_a_damaged_database_not_an_unreachable_one(
    make_federation: Any,
) -> None:
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]
    with kz.node.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE api_tokens")
    message = refused(
        gateway(kz.instance, "token", "list", passphrase=PASSPHRASE), "database-damaged"
    )
    assert "api_tokens" in message and "backup" in message


def test_init_when_the_database_is_unreachable_leaves_no_keys(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    result = gateway(
        instance,
        "init",
        "--node",
        "KZ",
        "--unsealed",
        "--database-url",
        "postgresql://gateway@127.0.0.1:1/nowhere",
    )
    assert "database_url" in refused(result, "database-unavailable")
    assert not (instance / "node-keys.json").exists()
    assert not (instance / "gateway.toml").exists()  # a second try is not refused
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 500)
    damaged = gateway(
        instance, "init", "--node", "KZ", "--unsealed", "--database-url", f"sqlite:///{junk}"
    )
    refused(damaged, "database-damaged")
    assert sorted(p.name for p in instance.iterdir()) == [] and junk.exists()
    succeeded(gateway(instance, "init", "--node", "KZ", "--unsealed"))


def test_init_never_takes_over_an_existing_node(tmp_path: Path, monkeypatch) -> None:
    kz = tmp_path / "kz"
    succeeded(gateway(kz, "init", "--node", "KZ", "--unsealed"))
    written = (kz / "gateway.toml").read_bytes()
    # The keys moved elsewhere: the folder still holds a node (its configuration).
    (kz / "node-keys.json").rename(tmp_path / "kz-keys.json")
    assert "gateway.toml exists" in refused(
        gateway(kz, "init", "--node", "KG", "--unsealed"), "already-initialised"
    )
    assert (kz / "gateway.toml").read_bytes() == written
    # Another node's database, or a key file the environment points at, is not adopted.
    kg = tmp_path / "kg"
    database = f"sqlite:///{kz / 'gateway.db'}"
    refused(
        gateway(kg, "init", "--node", "KG", "--unsealed", "--database-url", database),
        "database-in-use",
    )
    assert not (kg / "gateway.toml").exists()
    monkeypatch.setenv("GATEWAY_KEY_FILE", str(tmp_path / "kz-keys.json"))
    refused(gateway(kg, "init", "--node", "KG", "--unsealed"), "already-initialised")
    assert not (kg / "gateway.toml").exists()
    uz_keys = tmp_path / "uz-keys.json"
    monkeypatch.setenv("GATEWAY_KEY_FILE", str(uz_keys))
    succeeded(gateway(tmp_path / "uz", "init", "--node", "UZ", "--unsealed"))
    assert uz_keys.exists() and not (tmp_path / "uz" / "node-keys.json").exists()
    succeeded(gateway(tmp_path / "uz", "keys", "show"))


def test_no_passphrase_and_no_terminal_is_an_error_before_anything_is_written(
    tmp_path: Path,
) -> None:
    instance = tmp_path / "kz"
    message = refused(gateway(instance, "init", "--node", "KZ"), "key-file-passphrase")
    assert "GATEWAY_KEY_PASSPHRASE" in message
    assert not instance.exists()
    succeeded(gateway(instance, "init", "--node", "KZ", passphrase="old words"))
    message = refused(
        gateway(instance, "keys", "reseal", passphrase="old words"), "key-file-passphrase"
    )
    assert "GATEWAY_NEW_KEY_PASSPHRASE" in message


def test_damaged_or_foreign_databases_and_bad_arguments_are_named(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    succeeded(gateway(instance, "init", "--node", "KZ", "--unsealed"))
    database = instance / "gateway.db"
    saved = database.read_bytes()
    # A database a newer version upgraded to a revision this one does not know.
    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    engine.dispose()
    assert "newer version" in refused(gateway(instance, "token", "list"), "database-revision")
    for damage in (b"not a database at all" * 300, saved[:4096]):
        database.write_bytes(damage)
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        assert "backup" in refused(gateway(instance, "token", "list"), "database-damaged")
    # Bytes that are not UTF-8, as a shell passes them (surrogate escapes).
    undecodable = b"x\xff".decode("utf-8", "surrogateescape")
    for args in (
        ["token", "issue", "kz-police", "--label", undecodable],
        ["user", "disable", undecodable],
    ):
        refused(gateway(instance, *args), "bad-argument")
    refused(gateway(tmp_path / undecodable, "keys", "show"), "bad-argument")
    # The same bytes in the environment instead of an argument.
    from_env = CliRunner().invoke(
        main,
        ["init", "--node", "KZ", "--unsealed"],
        env={"GATEWAY_INSTANCE": str(tmp_path / undecodable)},
        prog_name="gateway",
    )
    refused(from_env, "config-file")
    # A missing file of a node that exists is not a hint to run init.
    other = tmp_path / "kg"
    succeeded(gateway(other, "init", "--node", "KG", "--unsealed"))
    (other / "node-keys.json").unlink()
    message = refused(gateway(other, "keys", "show"), "file-not-found")
    assert "gateway init" not in message


def test_unsealed_node_keys_entry_and_trust_list(tmp_path: Path) -> None:
    instance = tmp_path / "kz"
    init = gateway(instance, "init", "--node", "KZ", "--unsealed")
    printed = printed_keys(succeeded(init))
    assert "WARNING" in init.stderr and "UNSEALED" in init.stderr
    key_file = instance / "node-keys.json"
    assert json.loads(key_file.read_bytes())["sealed"] is False
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.warns(UnsealedKeyWarning):
        ring = NodeKeys.load(key_file, None)
    assert printed["sig"] == (ring.current_signing.kid, fingerprint(ring.current_signing.public))
    assert printed["enc"][0] == ring.current_encryption.kid

    show = gateway(instance, "keys", "show")
    assert printed_keys(succeeded(show)) == printed
    assert show.stdout.startswith("Node KZ\n")
    # The unsealed file is named on one warning line, not as a Python warning.
    assert "WARNING" in show.stderr and "UnsealedKeyWarning" not in show.stderr

    entry = json.loads(
        succeeded(
            gateway(
                instance,
                "keys",
                "entry",
                "--name",
                "Kazakhstan MVD",
                "--endpoint",
                "https://xb1.kz.example",
            )
        )
    )
    assert (entry["node"], entry["name"], entry["endpoint"]) == (
        "KZ",
        "Kazakhstan MVD",
        "https://xb1.kz.example",
    )
    assert {key["use"]: key["kid"] for key in entry["keys"]} == {
        "sig": printed["sig"][0],
        "enc": printed["enc"][0],
    }
    for key in entry["keys"]:
        assert key["status"] == "active" and key["not_before"] < key["not_after"]
    # An empty GATEWAY_KEY_PASSPHRASE is no passphrase: the unsealed file is written
    # back unsealed (it raised ValueError), and says so.
    rotated = CliRunner().invoke(
        main,
        ["--instance", str(instance), "keys", "rotate", "--enc", "--name", "Kazakhstan MVD"]
        + ["--endpoint", "https://xb1.kz.example"],
        env={"GATEWAY_KEY_PASSPHRASE": ""},
    )
    assert rotated.exit_code == 0, (rotated.output, rotated.exception)
    assert "stays UNSEALED" in rotated.stderr
    assert json.loads(key_file.read_bytes())["sealed"] is False
    for endpoint in ("ftp://xb1.kz.example", "https://xb1.kz.example/a b", "https://"):
        usage_error(
            gateway(instance, "keys", "entry", "--name", "X", "--endpoint", endpoint),
            "--endpoint",
            "http(s)",
        )
    for not_after in ("1", str(2**53)):  # in the past; beyond what a trust list holds
        usage_error(
            gateway(
                instance,
                *("keys", "entry", "--name", "X", "--endpoint", "https://xb1.kz.example"),
                *("--not-after", not_after),
            ),
            "--not-after",
        )

    # The administrators build and sign the list from that entry.
    now = int(time.time())
    admins = [SigningKeyPair(hashlib.sha256(f"cli-admin-{i}".encode()).digest()) for i in range(3)]
    kg = NodeKeys.deterministic("KG", b"cli-test")
    raw = build_list(
        federation="cli-federation",
        version=1,
        issued_at=now - 60,
        expires=now + 30 * 86400,
        prev=None,
        threshold=2,
        admins=[admin_entry(a, f"admin {i}") for i, a in enumerate(admins)],
        nodes=[
            entry,
            node_entry(
                "KG",
                "Kyrgyzstan",
                "https://xb1.kg.example",
                kg.current_signing,
                kg.current_encryption,
            ),
        ],
    )
    trust_file = tmp_path / "trust-list-v1.json"
    trust_file.write_bytes(assemble(raw, [sign_list(raw, a) for a in admins[:2]]))
    anchor = hashlib.sha256(raw).hexdigest()

    refused(gateway(instance, "trust", "show"), "no-trust-list")
    assert "--anchor" in refused(
        gateway(instance, "trust", "install", str(trust_file)), "no-trust-anchor"
    )
    wrong = hashlib.sha256(b"another list").hexdigest()
    refused(
        gateway(instance, "trust", "install", str(trust_file), "--anchor", wrong),
        "trust-anchor-mismatch",
    )
    usage_error(
        gateway(instance, "trust", "install", str(trust_file), "--anchor", "zz"), "--anchor"
    )
    missing = refused(
        gateway(instance, "trust", "install", str(tmp_path / "missing.json")), "file-not-found"
    )
    assert "missing.json: no such file" in missing

    # An operator's comments in the configuration survive the anchor being pinned.
    config = instance / "gateway.toml"
    config.write_text("# KZ production node\n" + config.read_text())
    installed = gateway(instance, "trust", "install", str(trust_file), "--anchor", anchor.upper())
    assert succeeded(installed).strip().splitlines() == [
        f"Pinned trust anchor {anchor} in {instance / 'gateway.toml'}.",
        "Installed trust list cli-federation version 1 (2 nodes, threshold 2).",
    ]
    # The anchor given once is pinned in the configuration for every later start.
    assert f'trust_anchor = "{anchor}"' in config.read_text()
    assert config.read_text().startswith("# KZ production node\n")
    # Another anchor given later does not contradict the pinned one: refused, not installed.
    assert "published" in refused(
        gateway(instance, "trust", "install", str(trust_file), "--anchor", wrong),
        "trust-anchor-mismatch",
    )
    shown = succeeded(gateway(instance, "trust", "show"))
    assert shown.startswith("cli-federation version 1, expires ")
    assert "EXPIRED" not in shown
    assert "  KZ Kazakhstan MVD https://xb1.kz.example" in shown
    assert "  KG Kyrgyzstan https://xb1.kg.example" in shown
    for use in ("sig", "enc"):
        kid, fp = printed[use]
        assert f"      {use} {kid} active {fp}" in shown

    # Installing version 1 again is refused by the trust rules, in one line.
    refused(gateway(instance, "trust", "install", str(trust_file)), "trust-rollback")
    assert "WARNING" not in installed.stderr
    # A node the list does not name installs it, and is told what that means.
    tj = tmp_path / "tj"
    succeeded(gateway(tj, "init", "--node", "TJ", "--unsealed"))
    outside = gateway(tj, "trust", "install", str(trust_file), "--anchor", anchor)
    succeeded(outside)
    assert "WARNING: this node (TJ) is not in trust list version 1" in outside.stderr
    assert "PROBLEM: this node (TJ) is not in" in gateway(tj, "keys", "check").stderr

    # The node whose entry the list carries: its key file and the list agree.
    agree = gateway(instance, "keys", "check")
    assert succeeded(agree).strip() == (
        f"Key file and trust list version 1 agree: this node signs with {printed['sig'][0]}, "
        f"peers encrypt to {printed['enc'][0]}."
    )
    # A node whose key file is not the one its entry was built from (a backup of
    # another node's folder, keys created again): warned at install, and `keys check`
    # fails naming both keys, before any peer's envelope is refused.
    other_kg = tmp_path / "kg"
    succeeded(gateway(other_kg, "init", "--node", "KG", "--unsealed"))
    mismatched = gateway(other_kg, "trust", "install", str(trust_file), "--anchor", anchor)
    succeeded(mismatched)
    warnings = [line for line in mismatched.stderr.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == 2, mismatched.stderr
    assert "no signing key of the key file" in warnings[0]
    assert kg.current_signing.kid in warnings[0]
    assert f"peers encrypt to {kg.current_encryption.kid}" in warnings[1]
    assert "not-a-recipient" in warnings[1]
    check = gateway(other_kg, "keys", "check")
    assert check.exit_code == 1 and check.stdout == ""
    assert [
        line.removeprefix("PROBLEM")
        for line in check.stderr.splitlines()
        if line.startswith("PROBLEM: ")
    ] == [w.removeprefix("WARNING") for w in warnings]
    # Another node's key file in this node's folder: said, not compared as if it were its own.
    swapped = tmp_path / "kz-swapped"
    succeeded(gateway(swapped, "init", "--node", "KZ", "--unsealed"))
    (swapped / "node-keys.json").write_bytes((other_kg / "node-keys.json").read_bytes())
    wrong_file = gateway(swapped, "trust", "install", str(trust_file), "--anchor", anchor)
    succeeded(wrong_file)
    assert "WARNING: the key file holds the keys of KG, not of KZ" in wrong_file.stderr
    refused(gateway(swapped, "keys", "check"), "keys-wrong-node")
    # Sealed without the passphrase at hand: installing says the keys were not compared.
    sealed_kg = tmp_path / "kg-sealed"
    succeeded(gateway(sealed_kg, "init", "--node", "KG", passphrase="correct horse battery"))
    unchecked = gateway(sealed_kg, "trust", "install", str(trust_file), "--anchor", anchor)
    succeeded(unchecked)
    assert "Note: the key file was not compared with the list" in unchecked.stderr
    assert "gateway keys check" in unchecked.stderr and "WARNING" not in unchecked.stderr


# ---------------------------------------------------------------------------- instance


@pytest.mark.parametrize(
    "command",
    [
        ["keys", "show"],
        ["trust", "show"],
        ["token", "list"],
        ["outbox", "list"],
        ["inbox", "rejected"],
        ["dispatch", "--once"],
        ["db", "upgrade"],
    ],
)
def test_missing_instance_folder(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-such-node"
    message = refused(gateway(missing, *command), "no-instance")
    assert str(missing) in message and "init" in message
    assert not missing.exists()


def test_an_instance_that_is_a_file_or_an_empty_folder_is_named_as_such(tmp_path: Path) -> None:
    a_file = tmp_path / "hostname"
    a_file.write_text("x\n")
    message = refused(gateway(a_file, "inbox", "list"), "no-instance")
    assert "is a file, not a folder" in message and "init" not in message
    empty = tmp_path / "empty"
    empty.mkdir()
    message = refused(gateway(empty, "inbox", "list"), "no-instance")
    assert "holds no node (gateway.toml is missing)" in message and "init --node" in message


def test_instance_folder_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_INSTANCE", str(tmp_path / "elsewhere"))
    result = CliRunner().invoke(main, ["token", "list"])
    assert str(tmp_path / "elsewhere") in refused(result, "no-instance")


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_instance_name_is_refused_not_taken_as_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    usage_error(gateway(name, "init", "--node", "KZ", "--unsealed"), "--instance", "current")
    assert list(tmp_path.iterdir()) == []  # no node made in the current folder


def test_db_upgrade(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text('node = "KZ"\n')
    for _ in range(2):  # a second run finds nothing to do
        output = succeeded(gateway(tmp_path, "db", "upgrade"))
        assert output.strip() == "Database is at the current schema."
    engine = create_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    with engine.connect() as connection:
        assert set(Base.metadata.tables) <= set(inspect(connection).get_table_names())
    engine.dispose()

    (tmp_path / "gateway.toml").write_text(
        'node = "KZ"\ndatabase_url = "postgresql://gateway@127.0.0.1:1/nowhere"\n'
    )
    refused(gateway(tmp_path, "db", "upgrade"), "database-unavailable")
    (tmp_path / "gateway.toml").write_text('node = "KZ"\npeer_timeout = "soon"\n')
    assert "peer_timeout" in refused(gateway(tmp_path, "db", "upgrade"), "config-value")


# ---------------------------------------------------------------------------- tokens


@sqlite_only
def test_tokens_issued_and_revoked_name_the_account_that_ran_the_command(
    make_federation: Any,
) -> None:
    """Also an account name that is not UTF-8 text (from LOGNAME): written escaped."""
    import json as json_module

    from sqlalchemy import select

    from gateway.models import AuditEntry

    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    env = {"LOGNAME": "op\udcff\x1b", "USER": "ignored"}
    issued = CliRunner().invoke(
        main, ["--instance", str(kz.instance), "token", "issue", "kz-x"], env=env
    )
    assert issued.exit_code == 0, (issued.output, issued.exception)
    token_id = re.search(r"Token (\d+)", issued.stdout).group(1)
    revoked = CliRunner().invoke(
        main, ["--instance", str(kz.instance), "token", "revoke", token_id], env=env
    )
    assert revoked.exit_code == 0, (revoked.output, revoked.exception)
    with kz.node.sessions() as session:
        entries = [
            json_module.loads(raw)
            for raw in session.scalars(
                select(AuditEntry.entry).where(
                    AuditEntry.kind.in_(["token-issued", "token-revoked"])
                )
            )
        ]
    assert [e["by"] for e in entries if e["token"] == int(token_id)] == [
        "command line (op\\udcff?)",
        "command line (op\\udcff?)",
    ]


@sqlite_only
def test_tokens_issue_list_revoke(make_federation: Any) -> None:
    kz = make_federation(("KZ", "KG"), serve=False)["KZ"]
    issued = succeeded(
        gateway(
            kz.instance,
            "token",
            "issue",
            "kz-police",
            "--label",
            "duty desk",
            passphrase=PASSPHRASE,
        )
    )
    header, secret = issued.strip().splitlines()
    token_id = int(re.fullmatch(r"Token (\d+) for kz-police \(shown once.*", header).group(1))
    assert secret.startswith("gwt_") and len(secret) > 40 and issued.count(secret) == 1

    def inbox_status(token: str) -> int:
        answer = kz.client().get(
            "/api/v1/inbox",
            headers={"Authorization": f"Bearer {token}", "X-Justification": "token check"},
        )
        return int(answer.status_code)

    assert inbox_status(secret) == 200

    listed = succeeded(gateway(kz.instance, "token", "list", passphrase=PASSPHRASE))
    line = next(row for row in listed.splitlines() if row.split()[0] == str(token_id))
    assert "kz-police" in line and "active" in line and "duty desk" in line
    assert secret not in listed and kz.token not in listed
    assert secret[10:30] not in listed

    revoked = succeeded(
        gateway(kz.instance, "token", "revoke", str(token_id), passphrase=PASSPHRASE)
    )
    assert f"Token {token_id} for kz-police revoked." in revoked
    again = succeeded(gateway(kz.instance, "token", "revoke", str(token_id), passphrase=PASSPHRASE))
    assert f"Token {token_id} for kz-police was already revoked at " in again
    # A user disabled twice keeps the first decision, and the second says so.
    add = ("user", "add", "a.seitkali", "--full-name", "A. Seitkali", "--agency", "kz-police")
    succeeded(gateway(kz.instance, *add, "--role", "officer", "--by", "KZ admin"))
    disable = ("user", "disable", "a.seitkali", "--reason", "left the unit", "--by", "KZ admin")
    succeeded(gateway(kz.instance, *disable))
    second = succeeded(
        gateway(kz.instance, "user", "disable", "a.seitkali", "--reason", "other", "--by", "B")
    )
    assert "already disabled" in second and "by KZ admin (left the unit)" in second
    assert inbox_status(secret) == 401
    assert inbox_status(kz.token) == 200  # the other token still works
    listed = succeeded(gateway(kz.instance, "token", "list", passphrase=PASSPHRASE))
    assert "revoked" in next(r for r in listed.splitlines() if r.split()[0] == str(token_id))

    refused(gateway(kz.instance, "token", "revoke", "9999", passphrase=PASSPHRASE), "no-such-token")
    usage_error(
        gateway(kz.instance, "token", "revoke", str(2**40), passphrase=PASSPHRASE), "TOKEN_ID"
    )
    refused(
        gateway(kz.instance, "token", "issue", "KZ Police", passphrase=PASSPHRASE), "bad-agency"
    )
    refused(
        gateway(
            kz.instance, "token", "issue", "kz-border", "--label", "x" * 201, passphrase=PASSPHRASE
        ),
        "bad-label",
    )
    # Reading the database needs no key; a command that needs the keys refuses a wrong
    # passphrase as such, not with a traceback.
    assert "kz-police" in succeeded(gateway(kz.instance, "token", "list", passphrase="wrong"))
    refused(gateway(kz.instance, "keys", "show", passphrase="wrong"), "key-file-passphrase")


# ---------------------------------------------------------------------------- outbox / inbox


@sqlite_only
def test_outbox_inbox_and_dispatch(make_federation: Any, monkeypatch: Any) -> None:
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]

    def on(member: Any, *args: str) -> Result:
        return gateway(member.instance, *args, passphrase=PASSPHRASE)

    assert succeeded(on(kz, "dispatch", "--once")).strip() == "Nothing due: 0 deliveries attempted."
    kg.server.stop()  # KG is down when KZ first sends
    answer = kz.client().post(
        "/api/v1/messages",
        headers=kz.auth(),
        json={"typ": "alert/1", "body": example_alert(), "to": ["KG"]},
    )
    assert answer.status_code == 202
    message_id = answer.get_json()["id"]
    delivery_id = answer.get_json()["deliveries"][0]["id"]

    listed = succeeded(on(kz, "outbox", "list"))
    assert re.search(rf"^{message_id} alert/1\s+kz-police\s+KG:queued$", listed, re.M), listed
    # The dispatcher needs the keys (it signs and co-signs checkpoints, and re-seals):
    # without the passphrase it says so at the start, not in a round days later.
    from gateway.dispatcher import Dispatcher

    def not_run(*_: Any, **__: Any) -> None:  # a check that came too late fails, not hangs
        raise AssertionError("the dispatcher ran without its keys")

    with monkeypatch.context() as patched:
        patched.setattr(Dispatcher, "run", not_run)
        patched.setattr(Dispatcher, "run_once", not_run)
        for mode in (["--once"], ["--until-idle"], []):
            message = refused(gateway(kz.instance, "dispatch", *mode), "key-file-passphrase")
            assert "GATEWAY_KEY_PASSPHRASE" in message
    assert succeeded(on(kz, "outbox", "list")) == listed  # nothing was attempted

    sent = succeeded(on(kz, "dispatch", "--once"))
    assert sent.strip() == "1 deliveries attempted: retrying/peer-unreachable"
    assert message_id in succeeded(on(kz, "outbox", "list", "--state", "retrying"))
    assert message_id not in succeeded(on(kz, "outbox", "list", "--state", "delivered"))
    usage_error(on(kz, "outbox", "list", "--state", "lost"), "--state")
    usage_error(on(kz, "outbox", "list", "--limit", "0"), "--limit")

    view = json.loads(succeeded(on(kz, "outbox", "show", message_id)))
    (delivery,) = view["deliveries"]
    assert (view["id"], delivery["id"], delivery["state"]) == (message_id, delivery_id, "retrying")
    assert [e["state"] for e in delivery["events"]] == ["queued", "retrying"]
    assert delivery["last_code"] == "peer-unreachable"

    retried = succeeded(on(kz, "outbox", "retry", str(delivery_id)))
    assert retried.strip() == f"Delivery {delivery_id} to KG queued again."
    view = json.loads(succeeded(on(kz, "outbox", "show", message_id)))
    assert view["deliveries"][0]["events"][-1]["code"] == "manual-retry"
    refused(on(kz, "outbox", "retry", str(delivery_id)), "not-retryable")
    refused(on(kz, "outbox", "retry", "4242"), "not-found")
    usage_error(on(kz, "outbox", "retry", str(10**20)), "DELIVERY_ID")
    refused(on(kz, "outbox", "show", "00000000-0000-7000-8000-000000000000"), "not-found")

    kg.server.start()
    assert succeeded(on(kz, "dispatch", "--once")).strip() == "1 deliveries attempted: delivered"
    assert re.search(rf"^{message_id} .*KG:delivered$", succeeded(on(kz, "outbox", "list")), re.M)

    inbox = succeeded(on(kg, "inbox", "list"))
    assert re.fullmatch(rf"\s*1 {message_id} from KZ\s+alert/1\n", inbox), inbox
    assert succeeded(on(kg, "inbox", "list", "--after", "1")) == ""
    usage_error(on(kg, "inbox", "list", "--after", str(10**20)), "--after")

    assert succeeded(on(kg, "inbox", "rejected")) == ""
    kg.client().post("/xb1/envelopes", data=b"not an envelope")
    rejected = succeeded(on(kg, "inbox", "rejected"))
    assert re.search(r"^\s*1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d malformed\s+from \?", rejected, re.M)


# ---------------------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_json(tmp_path: Path) -> None:
    # A shell set up for a real node: the demo must not touch its database.
    real = tmp_path / "real-node.db"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        "GATEWAY_DATABASE_URL": f"sqlite:///{real}",
        "GATEWAY_WORKERS": "0",
    }
    finished = subprocess.run(
        [sys.executable, "-m", "gateway", "demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=90,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    summary = json.loads(finished.stdout)
    assert [n["node"] for n in summary["nodes"]] == ["KZ", "KG", "UZ"]
    assert summary["sent"] == summary["delivered"] == summary["receipts_verified"] >= 5
    assert summary["lost"] == 0 and summary["duplicates"] == 0
    assert set(summary["audit_entries"]) == {"KZ", "KG", "UZ"}
    assert all(size > 0 for size in summary["audit_entries"].values())
    assert list(tmp_path.iterdir()) == []  # the demo cleans up after itself (and no real-node.db)
    assert b"no policy.toml" not in finished.stderr  # each demo node has its agreements
    assert b"ignoring GATEWAY_DATABASE_URL, GATEWAY_WORKERS from this shell" in finished.stderr


@pytest.mark.slow
def test_a_demo_told_to_stop_stops_its_servers_and_removes_its_folder(tmp_path: Path) -> None:
    """SIGTERM (a service manager, a closed terminal's SIGHUP) ends the demo as Ctrl-C
    does: its servers run in sessions of their own, so they stop only if it stops them."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo"],
        env={**env, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ports = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if found := re.search(r"listening on http://127\.0\.0\.1:(\d+)", line):
                ports.append(int(found.group(1)))
            if len(ports) == 3:
                break
        assert len(ports) == 3, demo.stderr.read() if demo.stderr else ""
        demo.send_signal(signal.SIGTERM)
        _, said = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 2 and "error [demo-stopped]: stopped by SIGTERM" in said
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, port  # nobody listens
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize(
    ("changed", "status"),
    [({}, 0), ({"duplicates": 1}, 1), ({"receipts_verified": 4}, 1), ({"lost": 1}, 1)],
)
def test_the_demo_fails_unless_every_delivery_arrived_once_with_its_receipt(
    monkeypatch: Any, changed: dict[str, int], status: int
) -> None:
    import gateway.demo

    summary = {"sent": 5, "delivered": 5, "receipts_verified": 5, "lost": 0, "duplicates": 0}
    monkeypatch.setattr(gateway.demo, "run_demo", lambda **_: {**summary, **changed})
    assert CliRunner().invoke(main, ["demo", "--json"]).exit_code == status


def test_the_demo_names_the_command_as_it_can_be_run(monkeypatch: Any, tmp_path: Path) -> None:
    """Run as .venv/bin/gateway without the virtual environment on PATH, the commands
    it suggests name that path."""
    from gateway.demo import _gateway_command

    here = tmp_path / "bin" / "gateway"
    monkeypatch.setattr(sys, "argv", [str(here), "demo"])
    monkeypatch.setenv("PATH", "/nonexistent")
    assert _gateway_command() == str(here)
    here.parent.mkdir()
    here.write_text("#!/bin/sh\n")
    here.chmod(0o755)
    monkeypatch.setenv("PATH", str(here.parent))
    assert _gateway_command() == "gateway"
    monkeypatch.setattr(sys, "argv", ["/somewhere/gateway/__main__.py", "demo"])
    assert _gateway_command() == f"{sys.executable} -m gateway"


@pytest.mark.parametrize("bind", ["", ":8080", "127.0.0.1", "127.0.0.1:99999", "a b:80", "unix:"])
def test_serve_refuses_an_address_that_is_not_host_and_port(tmp_path: Path, bind: str) -> None:
    usage_error(gateway(tmp_path, "serve", "--bind", bind), "--bind")


@sqlite_only
def test_serve_says_at_once_when_it_cannot_listen(make_federation: Any, monkeypatch: Any) -> None:
    """A port another process listens on, or a socket in a folder that does not exist:
    one error line, instead of gunicorn's retries for five seconds."""
    fed = make_federation(("KZ", "KG"), serve=False)
    kz = fed["KZ"]

    def not_started(*_: Any) -> None:
        raise AssertionError("gunicorn was started")

    monkeypatch.setattr(os, "execv", not_started)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refused(
            gateway(kz.instance, "serve", "--bind", f"127.0.0.1:{port}", passphrase=PASSPHRASE),
            "bind-failed",
        )
    assert "another process listens there" in message and "--bind" in message
    missing = kz.instance / "no-such-folder" / "gw.sock"
    message = refused(
        gateway(kz.instance, "serve", "--bind", f"unix:{missing}", passphrase=PASSPHRASE),
        "bind-failed",
    )
    assert "does not exist" in message


def test_a_passphrase_typed_once_is_used_again_when_the_keys_are_reloaded(
    make_federation: Any, monkeypatch: Any
) -> None:
    """A dispatcher started at a terminal reloads a changed key file with the
    passphrase typed at its start instead of prompting in the middle of its work."""
    from gateway.cli import _load_keys

    fed = make_federation(("KZ", "KG"), serve=False)
    monkeypatch.delenv("GATEWAY_KEY_PASSPHRASE", raising=False)
    settings = load_settings(fed["KZ"].instance)
    assert settings.key_passphrase is None
    keys, used = _load_keys(settings, typed=PASSPHRASE)
    assert keys.node == "KZ" and used == PASSPHRASE
    with pytest.raises(KeyFileError):  # nothing typed, no terminal: said, not asked
        _load_keys(settings)


def test_small_misuses_are_named(tmp_path: Path) -> None:
    refused(gateway(tmp_path / "nowhere", "policy", "show"), "no-instance")
    instance = tmp_path / "kz"
    succeeded(gateway(instance, "init", "--node", "KZ", "--unsealed"))
    refused(gateway(instance, "dispatch", "--once", "--until-idle"), "bad-option")


def test_a_refused_database_change_is_one_line_not_a_traceback(monkeypatch) -> None:
    """A conflict with another process surfaces as an IntegrityError; it is not called
    a damaged database, and it ends in one error line."""
    import click
    from sqlalchemy.exc import IntegrityError

    @click.command("conflict")
    def conflict() -> None:
        raise IntegrityError("INSERT …", {}, Exception("UNIQUE constraint failed: users.name"))

    monkeypatch.setitem(main.commands, "conflict", conflict)
    message = refused(CliRunner().invoke(main, ["conflict"]), "database-error")
    assert "UNIQUE constraint failed" in message
