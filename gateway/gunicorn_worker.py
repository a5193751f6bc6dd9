"""The node's gunicorn worker: gunicorn's threaded worker (``gthread``), except that a
request gunicorn itself refuses before the app sees it (a request line or header that
is not HTTP, a line or headers over the limits, a transfer coding it does not read)
is answered like every other refusal of the node: JSON with a stable error code and
a sentence, not gunicorn's HTML page, and with a 4xx status (gunicorn answers an
unknown transfer coding with 501).

``gateway serve``, ``gateway demo``, deploy/gunicorn.conf.py and the benchmarks run
it (``worker_class = "gateway.gunicorn_worker.ThreadWorker"``)."""

from __future__ import annotations

import json
import ssl
from datetime import datetime
from typing import Any

from gunicorn.http import errors
from gunicorn.http.message import Message
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.util import write_nonblock
from gunicorn.workers.gthread import ThreadWorker as _GunicornThreadWorker

from gateway.errors import SECURITY_HEADERS

# How much of gunicorn's description of the offending input an answer repeats.
DETAIL_CHARS = 200


def _classes(*names: str) -> tuple[type[BaseException], ...]:
    """The exception classes of gunicorn.http.errors with these names (older gunicorn
    versions lack some of them)."""
    found = (getattr(errors, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


# Exception classes, status, code and sentence, first match wins (a subclass before
# its base class).
REFUSALS: list[tuple[tuple[type[BaseException], ...], int, str, str]] = [
    (
        _classes("LimitRequestLine"),
        414,
        "request-line-too-long",
        "the request line is longer than this node accepts; shorten the path and query",
    ),
    (
        _classes("LimitRequestHeaders"),
        431,
        "headers-too-large",
        "the request has more header fields, or longer ones, than this node accepts; "
        "send fewer or shorter headers",
    ),
    (
        _classes("InvalidRequestMethod"),
        400,
        "bad-method",
        "the request method is not a valid HTTP method; use GET or POST as the API says",
    ),
    (
        _classes("InvalidHTTPVersion"),
        400,
        "bad-http-version",
        "the request's HTTP version is not one this node speaks; send HTTP/1.1",
    ),
    (
        _classes("InvalidRequestLine", "InvalidH2CPreface"),
        400,
        "bad-request-line",
        "the request line is not valid HTTP/1.1 (method, path, version, separated by "
        "single spaces); fix the client",
    ),
    (
        _classes("InvalidHeaderName", "InvalidHeader", "ObsoleteFolding"),
        400,
        "bad-header",
        "a request header is not valid HTTP (a bad name, a bad value, a folded line or "
        "a conflicting or duplicated length); fix the client",
    ),
    (
        _classes("UnsupportedTransferCoding"),
        400,
        "bad-transfer-encoding",
        "the request's Transfer-Encoding is not one this node reads; send the body with "
        "Content-Length, or as chunked",
    ),
    (
        _classes("InvalidChunkSize", "ChunkMissingTerminator", "InvalidChunkExtension"),
        400,
        "bad-body",
        "the chunked body could not be read (a chunk size that is not hex, or a chunk "
        "without its terminator); send it again with Content-Length, or as well-formed "
        "chunks",
    ),
    (
        _classes("ExpectationFailed"),
        417,
        "expectation-failed",
        "the request's Expect header asks for something other than 100-continue; remove it",
    ),
    (
        _classes("InvalidProxyLine", "InvalidProxyHeader", "ForbiddenProxyRequest")
        + _classes("InvalidSchemeHeaders"),
        400,
        "bad-proxy-header",
        "the request's proxy or forwarding headers are not valid or not allowed from "
        "this address; reach the node through its configured reverse proxy",
    ),
    (
        # gunicorn's "configuration problem" that a request can cause: a path outside
        # the SCRIPT_NAME the node is mounted under.
        _classes("ConfigurationProblem"),
        404,
        "not-found",
        "no such URL: the path is outside the prefix this node is served under",
    ),
    (
        (ssl.SSLError,),
        400,
        "tls-failed",
        "the TLS handshake or record could not be read; check the client's TLS settings",
    ),
]


def refusal(error: BaseException) -> tuple[int, str, str] | None:
    """Status, code and sentence for a request gunicorn refused with ``error``, or
    None when ``error`` is not the client's fault."""
    if isinstance(error, _classes("InvalidResponseHeader", "InvalidResponseHeaderName")):
        return None  # a header the app tried to send: the node's own fault
    for classes, status, code, sentence in REFUSALS:
        if classes and isinstance(error, classes):
            detail = str(error)[:DETAIL_CHARS]
            return status, code, f"{sentence} ({detail})" if detail else sentence
    return None


def answer(status: int, reason: str, code: str, message: str) -> bytes:
    """The whole HTTP response for a refusal (the connection is closed after it)."""
    body = json.dumps({"error": code, "message": message}, sort_keys=True).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in SECURITY_HEADERS)
        + "\r\n"
    )
    return head.encode("ascii") + body


REASONS = {
    400: "Bad Request",
    404: "Not Found",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


# Set on a request once the app's answer to it has been sent.
_ANSWERED = "_xb1_answered"


class ThreadWorker(_GunicornThreadWorker):  # type: ignore[misc]
    """gunicorn's ``gthread`` worker answering its own refusals in the node's format."""

    def handle_request(self, req: Any, conn: Any) -> Any:
        keepalive = super().handle_request(req, conn)
        setattr(req, _ANSWERED, True)
        return keepalive

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        started = datetime.now()
        addr = addr or ("", -1)  # a unix socket
        if req is not None and getattr(req, _ANSWERED, False):
            # The request was answered; gunicorn then read the rest of a body the app
            # left unread (to keep the connection) and that failed. A second answer
            # would be read as the answer to the client's next request: the
            # connection is closed instead (gunicorn closes it after this returns).
            self.log.warning(
                "Invalid request from ip=%s after its answer: %s; connection closed",
                addr[0],
                exc,
            )
            return
        refused = refusal(exc)
        if refused is not None:
            status, code, message = refused
            self.log.warning("Invalid request from ip=%s: %s (%s)", addr[0], exc, code)
            if req is None:  # a header error carries its request: for the access log
                carried = getattr(exc, "req", None)  # (a request line error, the line)
                req = carried if isinstance(carried, Message) else None
        else:
            if hasattr(req, "uri"):
                self.log.exception("Error handling request %s", req.uri)
            else:
                self.log.exception("Error handling request (no URI read)")
            status, code = 500, "internal-error"
            message = "the node hit an internal error; the operator's log has the details"
        body = answer(status, REASONS[status], code, message)
        if req is not None:
            try:
                environ = default_environ(req, client, self.cfg)
                environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
                response = Response(req, client, self.cfg)
                response.status = f"{status} {REASONS[status]}"
                response.response_length = len(body)
                self.log.access(response, req, environ, datetime.now() - started)
            except Exception:  # noqa: BLE001 - the answer matters more than its log line
                self.log.exception("could not write the access log line of a refusal")
        try:
            write_nonblock(client, body)
        except Exception:  # noqa: BLE001 - the client may be gone; gunicorn does the same
            self.log.debug("Failed to send error message.")
