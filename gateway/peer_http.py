"""HTTP to peers with one deadline for a whole attempt.

The timeouts of requests and urllib3 bound each socket operation (a connect, one
read, one write), not an exchange: a peer that sends its status line and headers
a byte at a time, each byte just within the timeout, or trickles its side of the
TLS handshake, or reads the request very slowly, holds a request for as long as
it likes.

``deadline(at)`` bounds everything that a session made by ``session()`` does on
this thread meanwhile: every socket such a request uses — a new one, from its
connect on (TLS handshake, request, status line, headers, body), or a keep-alive
connection taken from the pool, plain or TLS, and the connection to an HTTP
proxy — is shut down (``shutdown(SHUT_RDWR)``) when ``at`` passes, with
``SO_LINGER`` 0 so that what the peer has not yet read of the request is
dropped when the connection is closed, not delivered after the deadline (bytes
already in the peer's receive buffer can still arrive). Shutting a socket down
wakes a read or write blocked on it in another thread (closing it does not), so
the request fails, or its answer ends early, at once;
``Attempt.expired`` then tells the caller that the deadline, not the peer, ended
it. One watchdog thread per process does this for every attempt in flight; it
ends after a while with nothing to watch and starts again when needed.

A connection cut so never serves another request: released while its attempt
is still open, it is closed on its way back to the pool; released after that,
the pool finds it dropped (a shut-down socket reads as closed) and opens a new
one. Requests outside ``deadline`` are not watched: their timeouts are per
operation. :func:`get` is a whole GET under one deadline, for the requests that
follow up on peers beside deliveries (trust lists, audit checkpoints and proofs).

Not bounded by the deadline: resolving the peer's host name (the resolver's own
timeouts), and connecting, which takes up to the connect timeout per address
the name resolves to, before there is a socket to watch. Connections through a
SOCKS proxy are not watched.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from gateway.errors import PeerError

# Seconds the watchdog thread waits with nothing to watch before it ends.
_IDLE = 30.0


class Attempt:
    """One attempt's deadline (``time.monotonic()`` seconds) and the sockets it used."""

    def __init__(self, at: float) -> None:
        self.at = at
        #: Set (once, by the watchdog) when ``at`` passed during the attempt.
        self.expired = False
        self._sockets: list[tuple[socket.socket, socket.socket]] = []  # (watched, its twin)
        self._connections: set[HTTPConnection] = set()


class _Watchdog:
    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.attempts: set[Attempt] = set()
        self.thread: threading.Thread | None = None

    def watch(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.add(attempt)
            try:
                if self.thread is None or not self.thread.is_alive():
                    self.thread = threading.Thread(
                        target=self._run, name="peer-http-deadlines", daemon=True
                    )
                    self.thread.start()
                else:
                    self.lock.notify()
            except BaseException:
                self.attempts.discard(attempt)  # no watchdog: not watched at all
                self.thread = None
                raise

    def forget(self, attempt: Attempt) -> None:
        with self.lock:
            self.attempts.discard(attempt)
            for _, twin in attempt._sockets:
                twin.close()
            attempt._sockets.clear()

    def add_socket(self, attempt: Attempt, connection: HTTPConnection, sock: Any) -> None:
        """Watch ``sock`` for ``attempt``, through a duplicate of its descriptor: the
        duplicate shuts down the same connection, and cannot outlive the attempt or
        meet a descriptor number reused by a socket that is none of its business."""
        with self.lock:
            if attempt not in self.attempts and not attempt.expired:
                return  # the attempt is over
            attempt._connections.add(connection)
            if any(watched is sock for watched, _ in attempt._sockets):
                return
            # From the descriptor alone: a TLS connection through an HTTPS proxy is a
            # wrapper (urllib3's SSLTransport) with a descriptor but no family or type.
            twin = socket.socket(fileno=os.dup(sock.fileno()))
            attempt._sockets.append((sock, twin))
            if attempt.expired:
                _shut(twin)

    def _run(self) -> None:
        with self.lock:
            while True:
                now = time.monotonic()
                for attempt in [a for a in self.attempts if a.at <= now]:
                    self.attempts.discard(attempt)
                    attempt.expired = True
                    for _, twin in attempt._sockets:
                        _shut(twin)
                if self.attempts:
                    self.lock.wait(min(a.at for a in self.attempts) - now)
                    continue
                self.lock.wait(_IDLE)
                if not self.attempts:
                    self.thread = None
                    return


def _shut(sock: socket.socket) -> None:
    try:
        # Unsent bytes are dropped when the connection is closed, not sent after the
        # deadline: a slow reader must not receive the rest of the envelope later.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # not connected (any more)
        pass


_watchdog = _Watchdog()
_local = threading.local()


def _fresh_watchdog_in_child() -> None:
    # A forked child has no watchdog thread, and its lock may have been held.
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_fresh_watchdog_in_child)


def _current() -> Attempt | None:
    return getattr(_local, "attempt", None)


@contextmanager
def deadline(at: float) -> Iterator[Attempt]:
    """Bound this thread's requests (through ``session()``) to end by ``at``
    (``time.monotonic()`` seconds). Read ``expired`` after the block: True if the
    deadline cut the attempt short."""
    attempt = Attempt(at)
    outer = _current()
    _watchdog.watch(attempt)  # first: if it fails, this thread's requests stay unwatched
    _local.attempt = attempt
    try:
        yield attempt
    finally:
        _local.attempt = outer
        _watchdog.forget(attempt)


def _watch(connection: HTTPConnection, sock: Any) -> None:
    attempt = _current()
    if attempt is not None and sock is not None:
        _watchdog.add_socket(attempt, connection, sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()  # connected; for https, before the TLS handshake
        try:
            _watch(self, sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch(self, self.sock)  # a connection from the pool: its socket is already open
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


def _put_back(conn: Any) -> None:
    attempt = _current()
    if attempt is not None and attempt.expired and conn in attempt._connections:
        conn.close()  # cut by the deadline: it goes back to the pool as closed


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        _put_back(conn)
        super()._put_conn(conn)


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        _put_back(conn)
        super()._put_conn(conn)


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):  # not SOCKS
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def session(http: requests.Session | None = None) -> requests.Session:
    """``http`` (or a new session) with its ``http://`` and ``https://`` requests
    made through connections that ``deadline`` watches."""
    http = http if http is not None else requests.Session()
    adapter = _Adapter()
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http


def get(
    http: requests.Session,
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    until: float | None = None,
) -> bytes:
    """GET ``url`` through ``http`` (a :func:`session`), the whole exchange within
    twice ``timeout`` (an envelope's attempt gets as long) and by ``until``
    (``time.monotonic()`` seconds) if given, for several requests sharing one budget:
    the body of a 200 answer, which may be at most ``max_bytes``. A peer that
    trickles its answer, or sends more, costs that time and no more memory. Raises
    :class:`PeerError`: ``peer-unreachable`` when no status arrived, ``peer-error``
    for another status ("answered HTTP N", with ``details`` ``{"status": N}``) or when
    the body did not arrive whole in time, broke off, or was too large."""
    began = time.monotonic()
    ends = began + 2 * timeout if until is None else min(began + 2 * timeout, until)
    limit = round(max(0.0, ends - began), 1)  # as said in errors
    status: int | None = None
    chunks: list[bytes] = []
    size = 0
    with deadline(ends) as attempt:
        try:
            with http.get(url, timeout=timeout, stream=True, allow_redirects=False) as answer:
                status = answer.status_code
                if status != 200:
                    raise PeerError(
                        "peer-error", f"{url} answered HTTP {status}", details={"status": status}
                    )
                for chunk in answer.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PeerError("peer-error", f"{url} sent more than {max_bytes} bytes")
                    chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            if attempt.expired:
                what = "nothing answered" if status is None else f"HTTP {status}, then too slow"
                problem = f"{url}: no complete answer within {limit:g} s ({what})"
            else:
                problem = f"{url}: {type(e).__name__}: {e}"[:300]
            raise PeerError("peer-unreachable" if status is None else "peer-error", problem) from e
    if attempt.expired:
        # A body that ends with the connection (no length given) reads as complete when
        # the deadline shuts the socket: what came is not all there was.
        raise PeerError("peer-error", f"{url}: no complete answer within {limit:g} s")
    return b"".join(chunks)
