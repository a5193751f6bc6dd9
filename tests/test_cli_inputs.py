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
        raise SystemExit(0)

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.setenv("GATEWAY_WORKERS", " 3 ")
    monkeypatch.setenv("GATEWAY_THREADS", "1024")
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        {
            variable: value,
            "GATEWAY_BIND": f"127.0.0.1:{_free_port()}",
            "GATEWAY_INSTANCE": str(tmp_path / "none"),
        }
    )
    finished = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--config", "python:gateway.gunicorn_conf"]
        + ["--check-config", "gateway.wsgi:app"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert f"{variable} is {value!r}, not a whole number from 1 to" in finished.stderr


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
