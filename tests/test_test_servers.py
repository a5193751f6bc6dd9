"""The suite's own test servers (tests/conftest.py): a port of the process's block
that something else holds is skipped, not a failed test."""

from __future__ import annotations

import socket

from tests import conftest


def test_a_taken_port_of_the_block_is_skipped(monkeypatch):
    monkeypatch.setattr(conftest, "_next_port", [0])
    first = conftest._server_ports()[0]
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", first))
        blocker.listen()
        monkeypatch.setattr(conftest, "_next_port", [0])
        server = conftest._serve(0, lambda environ, start_response: [])
        try:
            assert server.server_address[1] != first
        finally:
            server.server_close()
