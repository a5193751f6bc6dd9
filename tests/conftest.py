"""Shared fixtures: databases (SQLite and PostgreSQL), and small federations of
nodes with deterministic keys, a threshold-signed trust list and, on request,
real HTTP servers on 127.0.0.1.

PostgreSQL tests use ``GATEWAY_TEST_PG_URL`` (default: the local ``test``
database). Without a server they skip on a laptop, but fail under ``CI=true``
so CI can never go green by skipping them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from werkzeug.serving import WSGIRequestHandler, make_server

import keys.sealed
from gateway.app import create_app
from gateway.config import load_settings, write_instance_file
from gateway.node import Node
from gateway.tokens import issue
from keys.keypair import SigningKeyPair
from keys.nodekeys import NodeKeys
from keys.sealed import MEMLIMIT_MIN, OPSLIMIT_MIN
from keys.trustlist import admin_entry, assemble, build_list, node_entry, sign_list

# Key files here are sealed with the minimum settings, to stay fast; the warning about
# weak ones is tested by lowering nothing (tests/test_keys_sealed.py).
keys.sealed.WEAK_BELOW = (OPSLIMIT_MIN, MEMLIMIT_MIN)

PG_URL = os.environ.get("GATEWAY_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PASSPHRASE = "correct horse battery staple"
NAMES = {
    "KZ": "Kazakhstan",
    "KG": "Kyrgyzstan",
    "UZ": "Uzbekistan",
    "TJ": "Tajikistan",
    "TM": "Turkmenistan",
}


def _pg_admin_url() -> str:
    return PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)


_pg_state: dict[str, Any] = {}


def postgres_available() -> str | None:
    """None if PostgreSQL answers, else the reason it does not."""
    if "reason" not in _pg_state:
        try:
            engine = create_engine(_pg_admin_url())
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as e:  # any driver or connection error means "not available"
            _pg_state["reason"] = f"PostgreSQL at {PG_URL} unavailable: {e}"
    return _pg_state["reason"]


def require_postgres() -> None:
    reason = postgres_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)")
    pytest.skip(reason)


class Databases:
    """Makes fresh, empty databases of one kind and drops them afterwards."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        self.folder = folder
        self._created: list[str] = []

    def new_url(self, label: str = "db") -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.folder / (label + '-' + uuid.uuid4().hex[:8] + '.db')}"
        name = f"xbtest_{label.lower().replace('-', '_')}_{uuid.uuid4().hex[:10]}"
        engine = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        self._created.append(name)
        base = PG_URL.rsplit("/", 1)[0]
        return f"{base}/{name}"

    def drop_all(self) -> None:
        if not self._created:
            return
        engine = create_engine(_pg_admin_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for name in self._created:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()


#: For a test of SQLite's own behaviour (a full disk, its file): the ``databases``
#: fixture on SQLite only.
sqlite_only = pytest.mark.parametrize("databases", ["sqlite"], indirect=True)
#: For what only a database server has (its own clock): PostgreSQL only.
postgres_only = pytest.mark.parametrize(
    "databases", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    if request.param == "postgresql":
        require_postgres()
    dbs = Databases(request.param, tmp_path)
    yield dbs
    dbs.drop_all()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def _serve(port: int, app: Any) -> Any:
    """A test server on ``port``, or for 0 on a port of this test process's own block
    (``_server_ports``): a test that stops its server and starts it again on the same
    port (a peer going down and coming back) then never finds the port taken by
    another test process's server or by a client connection's local port."""
    if port != 0:
        return make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
    for candidate in _server_ports():
        try:
            server = make_server(
                "127.0.0.1", candidate, app, threaded=True, request_handler=_QuietHandler
            )
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            continue  # used by something else on this machine
        except SystemExit as stopped:  # how werkzeug reports a port it could not bind
            cause = stopped.__context__
            if not (isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE):
                raise
            continue
        _next_port[0] = candidate + 1  # a stopped server's port is not handed out soon
        return server
    raise RuntimeError("no free port left in this test process's block")


PORT_BLOCK = 1000
_next_port = [0]  # the next port to try (0: the block's first)


def _server_ports() -> list[int]:
    """One round through this process's block of ports, starting after the last one
    handed out. The blocks lie below the kernel's range of ephemeral ports (the local
    ports of client connections, and of servers bound to port 0), one per xdist
    worker (gw0, gw1, ...); where that range starts too low for them, port 0 is used."""
    try:
        ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        lowest_ephemeral = int(ephemeral.split()[0])
    except (OSError, ValueError, IndexError):
        lowest_ephemeral = 0
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    index = int(worker) if worker.isdigit() else 0
    first = 10_000 + index * PORT_BLOCK
    if first + PORT_BLOCK > lowest_ephemeral:
        return [0]
    start = max(_next_port[0] - first, 0)
    return [first + (start + step) % PORT_BLOCK for step in range(PORT_BLOCK)]


class _Switch:
    """A WSGI app whose target is set after the server has bound its port."""

    def __init__(self) -> None:
        self.app: Callable[..., Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class LiveServer:
    port: int
    switch: _Switch
    server: Any = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.server is None:
            self.server = _serve(self.port, self.switch)
            self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until ``start``."""
        if self.server is not None:
            if self.thread is not None:
                self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None


@dataclass
class Member:
    id: str
    keys: NodeKeys
    instance: Path
    node: Node
    server: LiveServer
    app: Any = None
    token: str = ""
    agency: str = ""
    posts: list[bytes] = field(default_factory=list)

    def client(self) -> Any:
        return self.app.test_client()

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Justification": "test case 1"}


@dataclass
class Federation:
    members: dict[str, Member]
    admins: list[SigningKeyPair]
    trust_wire: bytes
    anchor: str

    def __getitem__(self, node_id: str) -> Member:
        return self.members[node_id]


def _counting(member: Member, app: Any) -> Callable[..., Any]:
    """Record every envelope POSTed to this node (to prove nothing is sent twice at once)."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/xb1/envelopes" and environ["REQUEST_METHOD"] == "POST":
            import io

            length = environ.get("CONTENT_LENGTH")
            # Without a length (chunked), the server's dechunking input ends the body.
            body = environ["wsgi.input"].read(int(length) if length else -1)
            member.posts.append(body)
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    return wsgi


@pytest.fixture
def make_federation(databases: Databases, tmp_path: Path) -> Iterator[Callable[..., Federation]]:
    started: list[Member] = []

    def build(
        node_ids: tuple[str, ...] = ("KZ", "KG", "UZ"),
        *,
        serve: bool = True,
        settings: dict[str, Any] | None = None,
        now: int | None = None,
    ) -> Federation:
        at = int(time.time()) if now is None else now
        servers = {}
        for node_id in node_ids:
            switch = _Switch()
            server = LiveServer(0, switch)
            server.server = _serve(0, switch)
            server.port = server.server.server_port
            servers[node_id] = server
        rings = {n: NodeKeys.deterministic(n, b"fixture-seed", created=at - 3600) for n in node_ids}
        admins = [SigningKeyPair(hashlib.sha256(f"admin-{i}".encode()).digest()) for i in range(3)]
        raw = build_list(
            federation="test-federation",
            version=1,
            issued_at=at - 60,
            expires=at + 30 * 86400,
            prev=None,
            threshold=2,
            admins=[admin_entry(a, f"admin {i}") for i, a in enumerate(admins)],
            nodes=[
                node_entry(
                    n,
                    NAMES.get(n, n),
                    servers[n].url,
                    rings[n].current_signing,
                    rings[n].current_encryption,
                    not_before=at - 3600,
                    not_after=at + 365 * 86400,
                )
                for n in node_ids
            ],
        )
        wire = assemble(raw, [sign_list(raw, a) for a in admins[:2]])
        anchor = hashlib.sha256(raw).hexdigest()
        members = {}
        for node_id in node_ids:
            instance = tmp_path / node_id
            instance.mkdir()
            config = {
                "node": node_id,
                "database_url": databases.new_url(node_id),
                "trust_anchor": anchor,
                "backoff_base": 0.05,
                "backoff_cap": 0.2,
                "peer_timeout": 2.0,
                # A lease well beyond an attempt: the dispatcher refuses to claim on
                # PostgreSQL when the clocks differ by more than a quarter of the margin
                # (settings.clock_bound, here 1.5 s), and measuring that difference can
                # be off by half a stall of the loaded test machine.
                "dispatch_lease": 10,
                "dispatch_interval": 0.05,
                "trust_refresh": 0.0,
                "allow_insecure_http": True,
                **(settings or {}),
            }
            write_instance_file(instance, config)
            rings[node_id].save(
                instance / "node-keys.json",
                PASSPHRASE,
                opslimit=OPSLIMIT_MIN,
                memlimit=MEMLIMIT_MIN,
            )
            node = Node(load_settings(instance), keys=rings[node_id])
            node.install_trust_list(wire, now=at)
            member = Member(node_id, rings[node_id], instance, node, servers[node_id])
            member.app = create_app(node=node)
            member.server.switch.app = _counting(member, member.app)
            member.agency = f"{node_id.lower()}-police"
            with node.sessions() as session:
                member.token = issue(session, member.agency, "tests").secret
                session.commit()
            if serve:
                member.server.start()
            started.append(member)
            members[node_id] = member
        return Federation(members, admins, wire, anchor)

    yield build
    for member in started:
        member.server.stop()
        member.node.engine.dispose()
