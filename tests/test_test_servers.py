"""The suite's own test servers (tests/conftest.py): a port of the process's block
that something else holds is skipped, not a failed test."""

from __future__ import annotations

import socket

from tests import conftest


def _held_port() -> tuple[socket.socket, int]:
    """A listening socket on the first port of the block that is free now."""
    for port in conftest._server_ports():
        blocker = socket.socket()
        try:
            blocker.bind(("127.0.0.1", port))
        except OSError:
            blocker.close()
            continue
        blocker.listen()
        return blocker, port
    raise AssertionError("no free port in the block")


def test_a_taken_port_of_the_block_is_skipped(monkeypatch):
    monkeypatch.setattr(conftest, "_next_port", [0])
    blocker, taken = _held_port()
    with blocker:
        monkeypatch.setattr(conftest, "_next_port", [taken])
        server = conftest._serve(0, lambda environ, start_response: [])
        try:
            assert server.server_address[1] != taken
        finally:
            server.server_close()
