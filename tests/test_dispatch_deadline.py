"""One attempt to send an envelope ends within twice ``peer_timeout``, whatever the
peer does: sending its status line and headers a byte at a time (each byte within
the timeout), never answering, trickling its side of the TLS handshake or its
answer over TLS, reading the request slowly — on a new connection or on one
reused from the pool. Otherwise the dispatcher's lease could run out while the
attempt is still running, and a second dispatcher send the same delivery at
the same time. A connection cut by the deadline is not used again; a peer that
answers normally afterwards is still sent to."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway import dispatcher as dispatcher_module
from gateway import peer_http
from gateway.dispatcher import Dispatcher
from gateway.errors import PeerError
from gateway.models import DeliveryEvent
from tests.test_dispatch_faults import _row
from tests.test_exchange import inbox_count, submit
from tests.test_rotation import revoke_encryption_key

# peer_timeout of these tests: an attempt may last 1.6 s, which a loaded machine (the
# suite runs in several processes) must leave enough for what is meant to succeed.
TIMEOUT = 0.8
LIMIT = 2 * TIMEOUT
SLACK = 1.5  # claiming and recording, on a busy machine; still far below GIVE_UP
# Between two bytes of a trickled answer: well within the timeout, and slow enough
# that not even the status code arrives by the deadline (8 bytes, "HTTP/1.1").
INTERVAL = 0.25 * TIMEOUT
GIVE_UP = 4.0  # a trickling peer stops (closes) after this long: a test fails, not hangs
SPARE_TIMEOUT = 2 * LIMIT  # see _attempt
TRICKLED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"X-Padding: " + b"." * 40 + b"\r\n\r\n{}"
)
# An answer that would be complete, and leave the connection open for another
# request, but for the rest of its headers: those are trickled.
AT_ONCE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
THEN_TRICKLED = b"X-Padding: " + b"." * 40 + b"\r\n\r\n"


class FakePeer:
    """A peer on a plain socket (or TLS, with ``tls``) on 127.0.0.1 that answers the
    n-th request with ``plays[n]`` (the last one repeats):

    - ``answer``: what ``answer(body)`` gives, with ``Content-Length``, keeping the
      connection open for the next request;
    - ``trickle``: ``TRICKLED`` a byte every ``INTERVAL`` seconds;
    - ``trickle-headers``: ``AT_ONCE`` at once, then ``THEN_TRICKLED`` so;
    - ``silent``: reads the request and never answers.

    ``requests`` lists (connection number, play) per request."""

    def __init__(
        self,
        plays: list[str],
        *,
        port: int = 0,
        answer: Callable[[bytes], tuple[int, bytes]] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.plays = plays
        self.answer = answer
        self.tls = tls
        self.requests: list[tuple[int, str]] = []
        self.connections = 0
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn, self.connections), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(GIVE_UP)
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            reader = conn.makefile("rb")
            while not self.stop.is_set():
                body = _read_request(reader)
                if body is None:
                    return
                play = self.plays[min(len(self.requests), len(self.plays) - 1)]
                self.requests.append((number, play))
                if play == "answer":
                    assert self.answer is not None
                    status, data = self.answer(body)
                    conn.sendall(
                        b"HTTP/1.1 %d Answer\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data)
                    )
                    continue
                if play == "silent":
                    conn.recv(1)  # until the client gives up (or GIVE_UP)
                    return
                if play == "trickle-headers":
                    conn.sendall(AT_ONCE)
                    _trickle(conn, THEN_TRICKLED, self.stop)
                else:
                    _trickle(conn, TRICKLED, self.stop)
                return
        except OSError:
            return  # the client cut the connection
        finally:
            conn.close()


def _read_request(reader) -> bytes | None:
    """The body of the next request on the connection, or None when it ended."""
    if not reader.readline():
        return None
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return reader.read(length)


def _trickle(conn: socket.socket, data: bytes, stop: threading.Event) -> None:
    give_up = time.monotonic() + GIVE_UP
    for i in range(len(data)):
        if time.monotonic() > give_up:
            return
        conn.sendall(data[i : i + 1])
        if stop.wait(INTERVAL):
            return


def _answering_for(member) -> Callable[[bytes], tuple[int, bytes]]:
    """The answers of ``member``'s real peer API."""

    def answer(body: bytes) -> tuple[int, bytes]:
        reply = member.client().post(
            "/xb1/envelopes", data=body, content_type="application/xb1+json"
        )
        return reply.status_code, reply.get_data()

    return answer


@pytest.fixture
def impostor(make_federation):
    """A federation of KZ and KG (``peer_timeout`` ``TIMEOUT``), with KG's port taken
    over by a ``FakePeer``: ``impostor(plays)`` gives the federation and the peer."""
    peers: list[FakePeer] = []

    def build(plays: list[str]):
        fed = make_federation(("KZ", "KG"), settings={"peer_timeout": TIMEOUT})
        kg = fed["KG"]
        kg.server.stop()
        peer = FakePeer(plays, port=kg.server.port, answer=_answering_for(kg))
        peers.append(peer)
        return fed, peer

    yield build
    for peer in peers:
        peer.close()


def _last_event(member, delivery_id: int) -> tuple[str, str | None, str | None]:
    with member.node.sessions() as session:
        event = session.scalars(
            select(DeliveryEvent)
            .where(DeliveryEvent.delivery_id == delivery_id)
            .order_by(DeliveryEvent.id.desc())
        ).first()
        assert event is not None
        return event.state, event.code, event.detail


def _timed(dispatcher: Dispatcher):
    began = time.monotonic()
    outcomes = dispatcher.run_once()
    return outcomes, time.monotonic() - began


@pytest.mark.parametrize(
    ("play", "code", "said"),
    [
        ("trickle", "peer-unreachable", "nothing answered"),
        ("trickle-headers", "answer-unreadable", "answered HTTP 200"),
    ],
    ids=["status-line", "headers"],
)
def test_a_trickled_answer_ends_the_attempt_at_its_deadline(impostor, play, code, said):
    """Every byte comes within ``peer_timeout``, so no read times out; the attempt
    still ends at twice ``peer_timeout``: as unreachable when not even the status
    line was complete, as unreadable when it was."""
    fed, peer = impostor([play])
    kz = fed["KZ"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    [outcome], took = _timed(Dispatcher(kz.node))
    assert LIMIT - 0.05 <= took < LIMIT + SLACK, took
    assert (outcome.state, outcome.code) == ("retrying", code), outcome
    assert outcome.detail is not None
    assert f"no complete answer within {LIMIT:g} s" in outcome.detail and said in outcome.detail
    row = _row(kz, delivery_id)
    assert (row.state, row.last_code, row.last_detail) == ("retrying", code, outcome.detail)
    assert row.lease_owner is None and row.lease_until is None
    assert _last_event(kz, delivery_id) == ("retrying", code, outcome.detail)
    assert peer.requests == [(1, play)]


def test_a_peer_that_never_answers_is_unreachable_after_the_timeout(impostor):
    fed, peer = impostor(["silent"])
    kz = fed["KZ"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    [outcome], took = _timed(Dispatcher(kz.node))
    assert took < LIMIT + SLACK, took
    assert (outcome.state, outcome.code) == ("retrying", "peer-unreachable"), outcome
    assert _row(kz, delivery_id).state == "retrying"
    assert peer.requests == [(1, "silent")]


def test_a_reused_connection_is_bounded_and_one_cut_is_not_reused(impostor):
    """The first envelope goes out and the connection stays open; the second goes on
    that same connection, and the peer trickles: the deadline cuts it. The third
    goes on a new connection and is delivered: the pool was not poisoned."""
    fed, peer = impostor(["answer", "trickle-headers", "answer"])
    kz, kg = fed["KZ"], fed["KG"]
    dispatcher = Dispatcher(kz.node)

    first = submit(kz, ["KG"])
    assert [o.state for o in dispatcher.run_once()] == ["delivered"]

    second = submit(kz, ["KG"])
    [cut], took = _timed(dispatcher)
    assert took < LIMIT + SLACK, took
    # Unreadable (the status line had come); on a machine loaded enough that the client
    # had not read it by the deadline, unreachable. Which code a trickle gets is the
    # test above's; this one is about the bound and the pool.
    assert cut.state == "retrying", cut
    assert cut.code in ("answer-unreadable", "peer-unreachable"), cut

    third = submit(kz, ["KG"])
    outcomes = dispatcher.run_once(now=int(time.time()) + 5)  # the second is due again too
    assert [o.state for o in outcomes] == ["delivered", "delivered"], outcomes
    assert peer.requests == [(1, "answer"), (1, "trickle-headers"), (2, "answer"), (2, "answer")]
    assert peer.connections == 2
    for message in (first, second, third):
        assert _row(kz, message["deliveries"][0]["id"]).state == "delivered"
        assert inbox_count(kg, "KZ", message["id"]) == 1


# --------------------------------------------------------------------------- the module itself


def _certificate(folder: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_peer(tmp_path):
    """``tls_peer(plays)``: a ``FakePeer`` speaking TLS, and its certificate."""
    cert, key = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    peers: list[FakePeer] = []

    def build(plays: list[str]) -> tuple[FakePeer, Path]:
        peer = FakePeer(plays, answer=lambda body: (200, b"{}"), tls=context)
        peers.append(peer)
        return peer, cert

    yield build
    for peer in peers:
        peer.close()


def _attempt(http: requests.Session, url: str, **kwargs):
    """One POST under a deadline of ``LIMIT``: (what it gave or raised, took, expired).
    The client's own timeout (per read, write or connect) is ``SPARE_TIMEOUT``, beyond
    the deadline: these tests are about the deadline, and a peer thread a loaded
    machine leaves waiting must not end an attempt before it."""
    began = time.monotonic()
    with peer_http.deadline(began + LIMIT) as attempt:
        data = kwargs.pop("data", b"{}")
        try:
            with http.post(url, data=data, timeout=SPARE_TIMEOUT, **kwargs) as a:
                result: object = (a.status_code, a.content)
        except requests.RequestException as e:
            result = e
    return result, time.monotonic() - began, attempt.expired


def test_over_tls_a_trickled_answer_on_a_reused_connection_ends_at_the_deadline(tls_peer):
    """The second request goes on the TLS connection of the first and is cut at its
    deadline; the third goes on a new connection and gets its answer."""
    peer, cert = tls_peer(["answer", "trickle-headers", "answer"])
    http = peer_http.session()
    url = f"https://127.0.0.1:{peer.port}/xb1/envelopes"
    result, took, expired = _attempt(http, url, verify=str(cert))
    assert result == (200, b"{}") and not expired
    result, took, expired = _attempt(http, url, verify=str(cert))
    assert LIMIT - 0.05 <= took < LIMIT + SLACK and expired, (result, took)
    result, took, expired = _attempt(http, url, verify=str(cert))
    assert result == (200, b"{}") and not expired
    assert peer.requests == [(1, "answer"), (1, "trickle-headers"), (2, "answer")]


def _https_proxy(context: ssl.SSLContext, stop: threading.Event) -> int:
    """An HTTPS proxy on 127.0.0.1 (TLS to the proxy, then CONNECT): its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)

    def relay(client: socket.socket) -> None:
        with context.wrap_socket(client, server_side=True) as tls:
            head = b""
            while b"\r\n\r\n" not in head:
                head += tls.recv(4096)
            host, port = head.split(b" ")[1].split(b":")
            with socket.create_connection((host.decode(), int(port))) as upstream:
                tls.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                tls.settimeout(0.05)
                upstream.settimeout(0.05)
                while not stop.is_set():
                    for source, target in ((tls, upstream), (upstream, tls)):
                        try:
                            data = source.recv(65536)
                        except (TimeoutError, ssl.SSLWantReadError):
                            continue
                        if not data:
                            return
                        target.sendall(data)

    def accept() -> None:
        with listener:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


def test_a_peer_behind_an_https_proxy_is_reached_and_watched(tls_peer, tmp_path):
    """Through an HTTPS proxy the peer's TLS runs inside the proxy's (a wrapper
    without a socket's family or type): the attempt is watched and answered."""
    peer, cert = tls_peer(["answer"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, cert.with_name("key.pem"))
    stop = threading.Event()
    try:
        proxy = _https_proxy(context, stop)
        url = f"https://127.0.0.1:{peer.port}/xb1/envelopes"
        proxies = {"https": f"https://127.0.0.1:{proxy}"}
        result, _, expired = _attempt(peer_http.session(), url, verify=str(cert), proxies=proxies)
        assert result == (200, b"{}") and not expired, result
    finally:
        stop.set()


def test_a_peer_reading_the_request_slowly_is_cut_at_the_deadline():
    """Each write goes through within the timeout, the whole request does not. (A
    body given as bytes is written by one ``sendall``, which the socket timeout
    bounds as a whole; one sent in pieces is written by many.)"""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    stop = threading.Event()

    def serve() -> None:  # about 1.6 MB/s: 8 MB take 5 s
        conn, _ = listener.accept()
        with conn:
            give_up = time.monotonic() + GIVE_UP
            while time.monotonic() < give_up and not stop.is_set():
                if not conn.recv(8192):
                    return
                time.sleep(0.005)

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/xb1/envelopes"
        result, took, expired = _attempt(peer_http.session(), url, data=iter([b"x" * 65536] * 128))
        assert isinstance(result, requests.ConnectionError) and expired, result
        assert took < LIMIT + SLACK, took
    finally:
        stop.set()
        listener.close()


def test_a_get_whose_body_ends_with_the_connection_is_not_whole_when_cut():
    """``peer_http.get`` (trust lists, checkpoints): an answer without a length, whose
    body ends when the connection closes, reads as complete when the deadline shuts the
    socket. What came is not all there was: refused, not returned."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{")
            give_up = time.monotonic() + GIVE_UP
            while time.monotonic() < give_up and not stop.is_set():
                try:
                    conn.sendall(b" ")
                except OSError:
                    return
                time.sleep(INTERVAL)

    threading.Thread(target=serve, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/xb1/checkpoint"
        began = time.monotonic()
        with pytest.raises(PeerError) as cut:
            peer_http.get(peer_http.session(), url, timeout=TIMEOUT, max_bytes=65536)
        assert time.monotonic() - began < LIMIT + SLACK
        assert cut.value.code == "peer-error"
        assert f"no complete answer within {LIMIT:g} s" in cut.value.message
    finally:
        stop.set()
        listener.close()


def _descriptors_connected_to(port: int) -> set[str] | None:
    """This process's descriptors of TCP sockets whose remote port is ``port``, or None
    where /proc does not say (not Linux)."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    inodes = {
        fields[9]
        for fields in (row.split() for row in rows)
        if int(fields[2].rsplit(":", 1)[1], 16) == port
    }
    found = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            found.add(fd)
    return found


def test_watching_keeps_one_thread_and_no_descriptors():
    """Many attempts: one watchdog thread at most, and every duplicated descriptor
    closed again; connections to a normal peer are reused."""
    peer = FakePeer(["answer"], answer=lambda body: (200, b"{}"))
    try:
        http = peer_http.session()
        url = f"http://127.0.0.1:{peer.port}/xb1/envelopes"
        assert _attempt(http, url)[0] == (200, b"{}")
        # The descriptors of this process's connections to the peer (a duplicate of one
        # refers to the same socket), not all descriptors: other tests' threads in this
        # process may open and close theirs meanwhile.
        before = _descriptors_connected_to(peer.port)
        for _ in range(30):
            result, _, expired = _attempt(http, url)
            assert result == (200, b"{}") and not expired
        watchdogs = [t for t in threading.enumerate() if t.name == "peer-http-deadlines"]
        assert len(watchdogs) <= 1
        if before is not None:
            assert len(before) == 1
            assert _descriptors_connected_to(peer.port) == before
        assert peer.connections == 1
    finally:
        peer.close()


def test_an_answer_complete_before_the_deadline_counts_however_late_it_is_looked_at(
    make_federation, monkeypatch
):
    """The whole receipt was read in time; the dispatcher's thread then lost the CPU
    past the deadline (a loaded host). The receipt still counts: delivered, once.
    (The default peer timeout, so that the whole answer is read in time however
    loaded this machine is.)"""
    fed = make_federation(("KZ", "KG"))
    kz, kg = fed["KZ"], fed["KG"]
    submit(kz, ["KG"])
    read = dispatcher_module._read_answer

    def read_then_stall(answer, *, deadline):  # type: ignore[no-untyped-def]
        whole = read(answer, deadline=deadline)
        assert time.monotonic() < deadline
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.1)
        return whole

    monkeypatch.setattr(dispatcher_module, "_read_answer", read_then_stall)
    [outcome] = Dispatcher(kz.node).run_once()
    assert (outcome.state, outcome.code) == ("delivered", None), outcome
    assert inbox_count(kg, "KZ") == 1


def test_time_spent_before_the_request_does_not_eat_into_the_lease(make_federation, monkeypatch):
    """Re-sealing stalls dispatcher A past its lease (a database lock, a slow disk);
    B claims the delivery meanwhile and delivers it. A must not send as well: it
    renews its lease right before the request, and its switch to the new envelope is
    conditional on still holding the delivery.

    Driven by events, not by sleeps a loaded machine could outlast: A stops in its
    sealing until B's claim has run, and B claims once A's lease is over. (Not until B
    has delivered: on PostgreSQL, B's own re-sealing waits for the audit lock A holds.)"""
    fed = make_federation(("KZ", "KG"), settings={"peer_timeout": 1.0, "dispatch_lease": 5})
    kz, kg = fed["KZ"], fed["KG"]
    delivery_id = submit(kz, ["KG"])["deliveries"][0]["id"]
    revoke_encryption_key(fed, "KG", int(time.time()))  # the next attempt seals anew
    seal = dispatcher_module.seal
    in_seal, b_claimed = threading.Event(), threading.Event()

    def slow_for_a(**options):  # type: ignore[no-untyped-def]
        if threading.current_thread().name == "A":
            in_seal.set()
            assert b_claimed.wait(60), "B never tried to claim"
        return seal(**options)

    monkeypatch.setattr(dispatcher_module, "seal", slow_for_a)
    outcomes = {}
    a = threading.Thread(
        target=lambda: outcomes.setdefault("A", Dispatcher(kz.node, worker="A").run_once()),
        name="A",
    )
    a.start()
    assert in_seal.wait(60), "A never began sealing"
    lease_until = _row(kz, delivery_id).lease_until
    assert lease_until is not None
    while int(time.time()) <= lease_until:  # a claim takes a lease that ran out before now
        time.sleep(0.05)
    b = Dispatcher(kz.node, worker="B")
    claim = b.claim

    def claim_then_let_a_go(now: int) -> list[int]:
        try:
            return claim(now)
        finally:
            b_claimed.set()

    b.claim = claim_then_let_a_go  # type: ignore[method-assign]
    outcomes["B"] = b.run_once()
    a.join(timeout=60)
    assert [(o.state, o.code) for o in outcomes["B"]] == [("delivered", None)]
    assert [(o.state, o.code) for o in outcomes["A"]] == [("sending", "lease-lost")]
    assert len(kg.posts) == 1 and inbox_count(kg, "KZ") == 1
