"""The node's exception tree: one base per trust boundary, each with a stable code.

* :class:`ApiError` — a request from a local agency or operator that we refuse.
* :class:`PeerError` — a peer (or the network to it) misbehaved while we delivered.
* :class:`NodeStateError` — our own state forbids the action (no keys, frozen trust list).
* :class:`ConfigError` — the configuration is inconsistent; the node does not start.

Envelope rejections have their own type, :class:`gateway.envelope.Rejected`,
whose codes are the protocol's.
"""

from __future__ import annotations

from typing import Any

#: Headers of every answer of the node: added by the app to each answer that does not
#: set them itself, and sent with the refusals of its HTTP server's worker.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("Content-Security-Policy", "default-src 'none'"),
    ("Referrer-Policy", "no-referrer"),
)


def printable(text: str) -> str:
    """``text`` (from outside: a peer's answer, an exception about it) as the node
    stores and shows it: control characters (NUL, which PostgreSQL's text refuses, and
    the terminal escapes an operator's screen would obey) and lone surrogates (which
    no UTF-8 column takes) written as backslash escapes; anything else unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def _escaped(character: str) -> str:
    code = ord(character)
    if 0xD800 <= code <= 0xDFFF:  # a lone surrogate
        return f"\\u{code:04x}"
    return character.encode("unicode_escape").decode("ascii")


def shown_value(raw: str) -> str:
    """A value as an error message quotes it: its repr, cut after 40 characters."""
    return repr(raw) if len(raw) <= 40 else f"{raw[:40]!r}…"


class GatewayError(Exception):
    code = "gateway-error"
    status = 500

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers or {}  # of the HTTP answer (a 405's Allow)

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details is not None:
            payload["details"] = self.details
        return payload


class ApiError(GatewayError):
    status = 400


class PeerError(GatewayError):
    status = 502


class NodeStateError(GatewayError):
    status = 503


class ConfigError(GatewayError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, status=500)
