"""Inputs of the ``gateway`` command that are read outside its options' parser: the
gunicorn variables of ``serve``, the node's name and endpoint of ``keys entry`` and
``keys rotate``, ``--out`` files in a folder that does not exist, and the hint about
``gateway init`` on a missing file. Each is one ``error [code]: sentence`` line with
exit status 2, before anything is started or written."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from gateway import cli_admin, gunicorn_conf
from gateway.cli import main
from keys.keypair import SigningKeyPair
from keys.proposal import AdminKey, node_from_entry
from keys.sealed import MEMLIMIT_MIN, OPSLIMIT_MIN, atomic_write
from schemas import xb1json
from tests.conftest import PASSPHRASE
from tests.test_cli import gateway, refused, succeeded, usage_error


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GATEWAY_* variable of the shell running the tests must not decide them."""
    for name in list(os.environ):
        if name.startswith("GATEWAY_"):
            monkeypatch.delenv(name)


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """An unsealed node's instance folder."""
    instance = tmp_path / "kz"
    succeeded(gateway(instance, "init", "--node", "KZ", "--unsealed"))
    return instance


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------------------- serve

BAD_COUNTS = ["0", "-1", "abc", "1.5", "", " ", "1025", "9" * 5000, "٣"]


@pytest.mark.parametrize("variable", ["GATEWAY_WORKERS", "GATEWAY_THREADS"])
@pytest.mark.parametrize("value", BAD_COUNTS)
def test_serve_refuses_bad_gunicorn_counts_before_starting_gunicorn(
    node: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    def not_started(*_: Any) -> None:
        raise AssertionError("gunicorn was started")

    monkeypatch.setattr(os, "execv", not_started)
    monkeypatch.setenv(variable, value)
    for extra in ([], ["--workers", "2"]):  # gunicorn reads the variables all the same
        message = refused(
            gateway(node, "serve", "--bind", f"127.0.0.1:{_free_port()}", *extra), "config-value"
        )
        assert message.startswith(f"{variable} is "), message
        assert "from 1 to 1024" in message


def test_serve_passes_good_counts_on_to_gunicorn(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []

    def execv(_path: str, argv: list[str]) -> None:
        started.append(argv)
        assert "GATEWAY_BIND" not in os.environ  # --bind is what counts: not handed on
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setenv("GATEWAY_WORKERS", " 3 ")
    monkeypatch.setenv("GATEWAY_THREADS", "1024")
    monkeypatch.setenv("GATEWAY_BIND", "")  # no effect under serve, so not judged either
    succeeded(gateway(node, "serve", "--bind", f"127.0.0.1:{_free_port()}"))
    assert started and "python:gateway.gunicorn_conf" in started[0]


def test_the_workers_option_has_the_bounds_of_the_variable(tmp_path: Path) -> None:
    from gateway.cli import serve

    (workers,) = [p for p in serve.params if p.name == "workers"]
    assert isinstance(workers.type, click.IntRange)
    assert (workers.type.min, workers.type.max) == (1, gunicorn_conf.MAX_WORKERS)
    usage_error(gateway(tmp_path, "serve", "--workers", "0"), "--workers")
    usage_error(
        gateway(tmp_path, "serve", "--workers", str(gunicorn_conf.MAX_WORKERS + 1)), "--workers"
    )


@pytest.mark.parametrize(
    ("variable", "value"), [("GATEWAY_WORKERS", "0"), ("GATEWAY_THREADS", "x")]
)
def test_gunicorn_itself_refuses_bad_counts_at_start(
    tmp_path: Path, variable: str, value: str
) -> None:
    """The systemd unit in deploy/ runs gunicorn with this module, without `serve`: a
    bad value stops it at start with a sentence naming the variable (with 0 workers it
    used to listen without anyone to answer)."""
    finished = _run(
        ["-m", "gunicorn", "--config", "python:gateway.gunicorn_conf"]
        + ["--check-config", "gateway.wsgi:app"],
        {
            variable: value,
            "GATEWAY_BIND": f"127.0.0.1:{_free_port()}",
            "GATEWAY_INSTANCE": str(tmp_path / "none"),
        },
        timeout=60,
    )
    assert finished.returncode != 0
    assert f"{variable} is {value!r}, not a whole number from 1 to" in finished.stderr


@pytest.mark.parametrize("value", ["", "8080", "127.0.0.1:0", "localhost:99999"])
def test_gunicorn_itself_refuses_a_bind_that_listens_nowhere(tmp_path: Path, value: str) -> None:
    """An empty GATEWAY_BIND had gunicorn run listening on nothing, up and answering
    nobody; `gateway serve` ignores the variable (it always passes --bind)."""
    finished = _run(
        ["-m", "gunicorn", "--config", "python:gateway.gunicorn_conf"]
        + ["--check-config", "gateway.wsgi:app"],
        {"GATEWAY_BIND": value, "GATEWAY_INSTANCE": str(tmp_path / "none")},
        timeout=60,
    )
    assert finished.returncode != 0
    assert f"GATEWAY_BIND is {value!r}, not HOST:PORT" in finished.stderr


# ---------------------------------------------------------------------------- keys

BAD_NAMES = ["", "K\x01G", "Kyrgyz\nstan", "K\u202eG", "x" * 1025]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_keys_entry_refuses_a_name_the_trust_list_would_refuse(node: Path, name: str) -> None:
    result = gateway(node, "keys", "entry", "--name", name, "--endpoint", "https://kg.example")
    usage_error(result, "--name")
    assert result.stdout == ""


@pytest.mark.parametrize("name", BAD_NAMES)
def test_keys_rotate_refuses_such_a_name_before_touching_the_key_file(
    node: Path, name: str
) -> None:
    key_file = node / "node-keys.json"
    before = key_file.read_bytes()
    result = gateway(
        node, "keys", "rotate", "--sig", "--name", name, "--endpoint", "https://kg.example"
    )
    usage_error(result, "--name")
    assert key_file.read_bytes() == before
    assert sorted(p.name for p in node.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("command", [["entry"], ["rotate", "--enc"]])
def test_an_endpoint_longer_than_the_trust_list_takes_is_refused(
    node: Path, command: list[str]
) -> None:
    before = (node / "node-keys.json").read_bytes()
    endpoint = "https://kg.example/" + "a" * 1024
    result = gateway(node, "keys", *command, "--name", "Kyrgyzstan", "--endpoint", endpoint)
    usage_error(result, "--endpoint")
    assert (node / "node-keys.json").read_bytes() == before


def test_an_accepted_name_and_endpoint_make_an_entry_the_admins_accept(node: Path) -> None:
    name = "Қазақстан ІІМ"
    printed = succeeded(
        gateway(node, "keys", "entry", "--name", name, "--endpoint", "https://xb1.kz.example")
    )
    assert node_from_entry(json.loads(printed))["name"] == name


# ---------------------------------------------------------------------------- --out files


def admin_run(*args: str | Path) -> Result:
    return CliRunner().invoke(
        main,
        ["admin", *map(str, args)],
        env={"GATEWAY_ADMIN_PASSPHRASE": PASSPHRASE},
        prog_name="gateway",
    )


def missing_folder(result: Result, target: Path) -> None:
    message = refused(result, "file-not-found")
    assert message == f"{target}: the folder {target.parent} does not exist", message
    assert ".tmp" not in result.output


def test_atomic_write_names_the_target_when_its_folder_does_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "none" / "k"
    with pytest.raises(FileNotFoundError) as raised:
        atomic_write(target, b"x")
    assert raised.value.filename == str(target)
    assert "does not exist" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_admin_out_files_in_a_folder_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_admin, "ADMIN_OPSLIMIT", OPSLIMIT_MIN)
    monkeypatch.setattr(cli_admin, "ADMIN_MEMLIMIT", MEMLIMIT_MIN)
    missing = tmp_path / "none" / "dir"

    missing_folder(admin_run("keygen", "--label", "x", "--out", missing / "k"), missing / "k")

    key = AdminKey("A. Admin", SigningKeyPair(hashlib.sha256(b"test admin").digest()))
    key_file = tmp_path / "admin.key"
    key.save(key_file, PASSPHRASE, opslimit=OPSLIMIT_MIN, memlimit=MEMLIMIT_MIN)
    public = tmp_path / "admin.pub.json"
    public.write_bytes(xb1json.dumps(key.entry()))
    bootstrap = ["bootstrap", "--federation", "test", "--admin", public, "--threshold", "1"]
    missing_folder(admin_run(*bootstrap, "--out", missing / "v1.json"), missing / "v1.json")

    proposal = tmp_path / "v1.json"
    succeeded(admin_run(*bootstrap, "--out", proposal))
    result = admin_run("sign", "--key", key_file, "--yes", "--out", missing / "s.json", proposal)
    missing_folder(result, missing / "s.json")
    assert not (tmp_path / "none").exists()


# ---------------------------------------------------------------------------- init hint

INIT_HINT = "did you run 'gateway init'?"


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_no_init_hint_for_files_outside_the_node_or_for_init_itself(tmp_path: Path) -> None:
    # /proc takes no new folders: mkdir says "no such file".
    demo = CliRunner().invoke(
        main, ["--instance", str(tmp_path / "none"), "demo", "--keep", "/proc/x"]
    )
    assert INIT_HINT not in refused(demo, "file-not-found")
    init = gateway("/proc/n1", "init", "--node", "KZ", "--unsealed")
    message = refused(init, "file-not-found")
    assert message.startswith("/proc/n1: no such file") and INIT_HINT not in message


def test_the_init_hint_only_for_a_file_of_a_node_folder_without_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = tmp_path / "kz"
    instance.mkdir()
    monkeypatch.setenv("GATEWAY_NODE", "KZ")  # a folder with no gateway.toml yet
    message = refused(gateway(instance, "keys", "show"), "file-not-found")
    assert message == f"{instance / 'node-keys.json'}: no such file; {INIT_HINT}"

    elsewhere = tmp_path / "keys.json"  # a key file outside the folder, not there
    monkeypatch.setenv("GATEWAY_KEY_FILE", str(elsewhere))
    message = refused(gateway(instance, "keys", "show"), "file-not-found")
    assert message.startswith(f"{elsewhere}: no such file") and INIT_HINT not in message

    monkeypatch.setenv("GATEWAY_KEY_FILE", str(tmp_path / "none" / "keys.json"))
    message = refused(gateway(instance, "keys", "show"), "file-not-found")
    assert (
        message
        == f"{tmp_path / 'none' / 'keys.json'}: the folder {tmp_path / 'none'} does not exist"
    )


# ---------------------------------------------------------------------------- logs


def _run(
    args: list[str], env_extra: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run this interpreter with ``args``, with no GATEWAY_* variable of the shell
    running the tests but those of ``env_extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def log_line(level: str, name: str, text: str) -> str:
    """A pattern of one of the node's log lines: time, [process], level, source."""
    return r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] " + f"{level} {name}: {text}"


def test_the_dispatcher_logs_with_time_and_level(node: Path) -> None:
    """Its warnings (and info lines) come with time, process and level; before, Python
    printed warnings as bare text and dropped the rest."""
    import re

    ran = _run(["-m", "gateway", "--instance", str(node), "dispatch", "--until-idle"], {})
    assert ran.returncode == 0, ran.stderr
    line = log_line("WARNING", r"gateway\.dispatcher", "trust list follow-up failed")
    assert re.search(line, ran.stderr), ran.stderr
    assert "alembic" not in ran.stderr  # the migration tool's routine stays quiet
    quiet = _run(
        ["-m", "gateway", "--instance", str(node), "dispatch", "--until-idle"],
        {"GATEWAY_LOG_LEVEL": "error"},
    )
    assert quiet.returncode == 0 and "WARNING gateway." not in quiet.stderr, quiet.stderr


@pytest.mark.parametrize("value", ["bogus", "", "infos"])
def test_a_log_level_that_is_none_is_refused(node: Path, value: str) -> None:
    result = CliRunner().invoke(
        main, ["--instance", str(node), "token", "list"], env={"GATEWAY_LOG_LEVEL": value}
    )
    assert "GATEWAY_LOG_LEVEL is" in refused(result, "config-value")
    assert gunicorn_conf.logs.level_from_env() == "info"  # unset here: the default


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ({"GATEWAY_PEER_TIMEOUT": "abc"}, "error [config-value]: setting peer_timeout"),
        ({"GATEWAY_INSTANCE": ""}, "error [config-value]: GATEWAY_INSTANCE is empty"),
        ({}, "error [file-not-found]: "),  # the key file removed below
    ],
)
def test_gunicorn_started_directly_says_why_the_node_cannot_start(
    node: Path, setting: dict[str, str], line: str
) -> None:
    """Without `serve` (the systemd unit), a bad setting or a missing key file is one
    `error [code]` line and the server stops with gunicorn's app-load status, not a
    traceback per worker (with several workers gunicorn's own halt failed too)."""
    if not setting:
        (node / "node-keys.json").unlink()
    base = {
        "GATEWAY_BIND": f"127.0.0.1:{_free_port()}",
        "GATEWAY_INSTANCE": str(node),
        "GATEWAY_WORKERS": "4",
    }
    gunicorn = ["-m", "gunicorn", "--config", "python:gateway.gunicorn_conf", "gateway.wsgi:app"]
    ran = _run(gunicorn, {**base, **setting})
    assert ran.returncode == 4, ran.stderr  # gunicorn: the application failed to load
    assert ran.stderr.count(line) == 1, ran.stderr  # said once, by the master
    assert "Traceback" not in ran.stderr and "Booting worker" not in ran.stderr


def test_an_empty_instance_variable_is_refused_not_taken_for_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for value in ("", " "):
        result = CliRunner().invoke(
            main, ["init", "--node", "KZ", "--unsealed"], env={"GATEWAY_INSTANCE": value}
        )
        usage_error(result, "--instance", "GATEWAY_INSTANCE")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["keys show", "admin anchor"])
def test_output_to_a_reader_that_went_away_ends_quietly(
    node: Path, tmp_path: Path, command: str
) -> None:
    """`gateway keys show | head -1`: no "error [file-error]: Broken pipe" line (the
    admin commands have a group of their own)."""
    from tests.test_keys_trustlist import W1

    args = command.split()
    if args[0] == "admin":
        (tmp_path / "list.json").write_bytes(W1)
        args.append(str(tmp_path / "list.json"))
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--instance", str(node), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before anything is written
    with process.stderr:
        errors = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, errors
    assert "error [" not in errors and "Traceback" not in errors, errors


# ---------------------------------------------------------------------------- inputs


def test_files_to_read_that_are_missing_are_file_not_found(node: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.json")
    for args in (
        ["trust", "install", missing],
        ["audit", "check", missing],
        ["admin", "status", missing],
        ["admin", "anchor", missing],
    ):
        assert missing in refused(gateway(node, *args), "file-not-found"), args


def test_a_node_without_its_key_file_is_told_how_to_make_keys(node: Path) -> None:
    (node / "node-keys.json").unlink()
    message = refused(gateway(node, "keys", "show"), "file-not-found")
    assert "gateway keys create" in message and "init" not in message


def test_a_person_s_token_takes_no_role(node: Path) -> None:
    succeeded(
        gateway(
            node, "user", "add", "a.seitkali", "--full-name", "A. Seitkali", "--agency",
            "kz-police", "--role", "officer", "--by", "admin",
        )
    )  # fmt: skip
    message = refused(
        gateway(node, "token", "issue", "--user", "a.seitkali", "--role", "admin"),
        "bad-arguments",
    )
    assert "--role" in message
    assert "officer" in succeeded(gateway(node, "token", "issue", "--user", "a.seitkali"))


def test_an_evidence_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    bundle = tmp_path / "evidence.json"
    bundle.write_bytes(b"\xff not json")
    result = CliRunner().invoke(main, ["audit", "check", str(bundle)])
    assert result.exit_code == 1
    assert "EVIDENCE DOES NOT VERIFY: " in result.stderr
    assert "is not an evidence bundle: not JSON text in UTF-8" in result.stderr


@pytest.mark.parametrize("name", ["central asia", "central+asia", " central-asia"])
def test_a_federation_name_no_checkpoint_could_carry_is_refused(name: str) -> None:
    from keys.proposal import ProposalError, bootstrap

    with pytest.raises(ProposalError) as refusal:
        bootstrap(name, [], 1, [], issued_at=1_800_000_000, expires=1_800_086_400)
    assert refusal.value.code == "proposal-bad-entry"
    assert "signed-note key name" in str(refusal.value)


def test_a_disable_that_lost_to_another_says_so(
    node: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another decision committed between the command's start and its change: the
    command reports the decision that stands, not its own."""
    from gateway import users
    from gateway.config import load_settings
    from gateway.node import Node

    succeeded(
        gateway(
            node, "user", "add", "a.seitkali", "--full-name", "A. Seitkali", "--agency",
            "kz-police", "--role", "officer", "--by", "admin",
        )
    )  # fmt: skip
    original = users.disable

    def meanwhile(session, name, *, reason, by):  # type: ignore[no-untyped-def]
        other = Node(load_settings(node), keys=lambda: pytest.fail("no keys needed"))
        with other.sessions() as first:
            original(first, name, reason="API decision", by="api admin")
            first.commit()
        other.engine.dispose()
        return original(session, name, reason=reason, by=by)

    monkeypatch.setattr(users, "disable", meanwhile)
    said = succeeded(
        gateway(node, "user", "disable", "a.seitkali", "--reason", "left", "--by", "cli")
    )
    assert "was already disabled" in said and "api admin" in said, said


def test_the_demo_keeps_its_nodes_only_in_a_new_or_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "KZ").mkdir()
    kept = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path)])
    message = refused(kept, "file-exists")
    assert "not empty" in message and "new or empty folder" in message
    assert [p.name for p in tmp_path.iterdir()] == ["KZ"]
