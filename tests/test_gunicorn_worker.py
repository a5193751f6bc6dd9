"""Requests that gunicorn refuses before the app sees them are answered in the node's
error format (gateway/gunicorn_worker.py): a 4xx, JSON with a stable code and a
sentence, under the settings ``gateway serve`` uses (gateway/gunicorn_conf.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gunicorn
import pytest
from gunicorn.http import errors
from gunicorn.util import load_class

from gateway import gunicorn_conf
from gateway.errors import SECURITY_HEADERS
from gateway.gunicorn_worker import ThreadWorker, answer, refusal
from tests.conftest import _server_ports

ROOT = Path(__file__).resolve().parent.parent
# The parser of gunicorn 27 (the version the project is tested with) refuses what the
# cases marked NEWER_PARSER send; older versions accept them or drop the connection.
GUNICORN_27 = tuple(int(part) for part in gunicorn.__version__.split(".")[:1]) >= (27,)
NEWER_PARSER = pytest.mark.skipif(not GUNICORN_27, reason="gunicorn before 27 accepts it")


def _free_port() -> int:
    for port in _server_ports():
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port")


def _exchange(port: int, raw: bytes, timeout: float = 10) -> bytes:
    """Send ``raw`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        client.sendall(raw)
        chunks = []
        while chunk := client.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """gunicorn with the node's settings (``gateway serve``'s --config) on a test port."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "server.log"
    log = log_path.open("wb")
    env = dict(os.environ, GATEWAY_LOG_LEVEL="warning", GATEWAY_WORKERS="1", GATEWAY_THREADS="2")
    process = subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:gateway.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "--chdir",
            str(ROOT),
            "tests.gunicorn_app:app",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-2000:]}")
            try:
                if _exchange(
                    port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=2
                ).startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not answer within 60 s")
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _parse(response: bytes) -> tuple[int, dict[str, str], dict[str, str]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split()[1]), headers, json.loads(body)


GOOD = b"GET / HTTP/1.1\r\nHost: t\r\n"
CASES: dict[str, Any] = {
    "not-http": (b"GARBAGE\r\n\r\n", 400, "bad-request-line"),
    "bad-method": (b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n", 400, "bad-method"),
    "bad-version": (b"GET / HTTP/7.1\r\nHost: t\r\n\r\n", 400, "bad-http-version"),
    "bad-header-name": (GOOD + b"Bad Name: x\r\n\r\n", 400, "bad-header"),
    "folded-header": (GOOD + b"X-A: one\r\n two\r\n\r\n", 400, "bad-header"),
    "two-lengths": (
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
        400,
        "bad-header",
    ),
    "long-line": (
        b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        414,
        "request-line-too-long",
    ),
    "many-headers": (
        GOOD + b"".join(b"X-%d: v\r\n" % i for i in range(60)) + b"\r\n",
        431,
        "headers-too-large",
    ),
    # gunicorn itself answers an unknown transfer coding with 501; the node with a 4xx.
    "unknown-coding": (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: foo\r\n\r\n",
        400,
        "bad-transfer-encoding",
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=NEWER_PARSER) if name in ("bad-version", "folded-header") else name
        for name in sorted(CASES)
    ],
)
def test_a_request_gunicorn_refuses_gets_the_nodes_json_error(server: int, name: str) -> None:
    raw, status, code = CASES[name]
    answered, headers, body = _parse(_exchange(server, raw))
    assert (answered, body["error"]) == (status, code)
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    for name, value in SECURITY_HEADERS:
        assert headers[name.lower()] == value, name
    assert set(body) == {"error", "message"}
    assert len(body["message"]) > 30 and "<" not in body["message"][:10]


def test_the_server_still_serves_after_refusals(server: int) -> None:
    _exchange(server, CASES["not-http"][0])
    response = _exchange(server, GOOD + b"Connection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"ok")


def test_serve_and_the_deploy_config_use_the_nodes_worker() -> None:
    assert load_class(gunicorn_conf.worker_class) is ThreadWorker
    demo = (ROOT / "gateway" / "demo.py").read_text()
    assert '"gateway.gunicorn_worker.ThreadWorker"' in demo


@NEWER_PARSER
def test_a_bad_chunk_left_unread_by_the_app_gets_no_second_answer(server: int) -> None:
    # The app answers without reading the body; gunicorn then reads the rest to keep
    # the connection, and the bad chunk must not become a second answer (which the
    # client would take for the answer to its next request): the connection is closed.
    raw = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"
    response = _exchange(server, raw)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"ok")
    assert response.count(b"HTTP/1.1 ") == 1


def test_what_is_not_the_clients_fault_is_not_a_refusal() -> None:
    # A header the app tried to send is the node's own error (gunicorn: 500), as is
    # anything that is not one of gunicorn's request errors.
    if GUNICORN_27:
        assert refusal(errors.InvalidResponseHeader("X-Bad\n")) is None
    assert refusal(ValueError("boom")) is None


def test_the_answer_is_well_formed_http_with_escaped_json() -> None:
    raw = answer(400, "Bad Request", "bad-header", 'a "quoted" \u00e9 \\ value')
    status, headers, body = _parse(raw)
    assert status == 400 and headers["content-type"] == "application/json"
    assert body == {"error": "bad-header", "message": 'a "quoted" \u00e9 \\ value'}
