"""HTTP blueprints: ``peer`` (node to node, PROTOCOL §7), ``agency``, ``admin_api``,
``health``; and the one JSON-body reader they share."""

from collections.abc import Collection
from typing import Any

from flask import request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from gateway.errors import ApiError, shown_value
from gateway.models import MAX_ROW_ID

#: What reading a request body raises when the client framed it badly: gunicorn's
#: parse errors (a chunk size that is not hex, a chunk without its terminator), an
#: ``OSError`` (a body cut short), and werkzeug's ``ClientDisconnected``, which its
#: input stream raises for an ``OSError`` of the server's stream.
UNREADABLE_BODY = (ParseException, OSError, ClientDisconnected)


def int_arg(name: str, default: int) -> int:
    """Query parameter ``name`` as a whole number (``default`` when absent), or 422."""
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: int() also reads " 5", "+5" and other scripts' digits ("１").
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
        raise ApiError(
            "bad-parameter", f"query parameter {name} must be a whole number", status=422
        )
    value = int(raw)
    if not 0 <= value <= MAX_ROW_ID:
        raise ApiError(
            "bad-parameter",
            f"query parameter {name} must be between 0 and {MAX_ROW_ID}",
            status=422,
        )
    return value


def refuse_head() -> None:
    """The agency and admin APIs answer no ``HEAD`` (which Flask would serve with the
    ``GET`` view): reading an inbox records the read and marks what it lists fetched,
    which a ``HEAD`` would do without returning anything."""
    if request.method == "HEAD":
        raise ApiError(
            "method-not-allowed",
            "HEAD is not answered here: it would count as a read of what it does not "
            "return; use GET",
            status=405,
            headers={"Allow": "GET"},
        )


def unreadable(error: Exception) -> ApiError:
    """The 400 for a body the server could not read as the client framed it."""
    return ApiError(
        "bad-body",
        f"the request body could not be read as sent ({type(error).__name__}: shorter than "
        "its Content-Length, or chunks that are malformed); send it again whole, with "
        "Content-Length or as well-formed chunks",
        status=400,
    )


def body_bytes() -> bytes:
    """The request body; a 400 ``bad-body`` when its framing is broken, a 413
    ``too-large`` when a chunked body reaches the size limit (werkzeug stops reading
    such a body at the limit without saying so: what came would be parsed as if it
    were all)."""
    try:
        data = request.get_data()
    except UNREADABLE_BODY as e:
        raise unreadable(e) from e
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge(
            f"the request body is {limit} bytes or more; the limit is {limit - 1} bytes"
        )
    return data


def json_object(members: Collection[str] | None = None, expected: str = "") -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``bad-json`` (never a 500); a 400
    ``bad-body`` when the body could not be read as framed. With ``members`` (those the
    call takes; ``expected`` says them in words), any other member is a 422
    ``bad-field``: a misspelt member must not be passed over unsaid (a token issued
    with the default role for a misspelt ``role``)."""
    body_bytes()  # read (and kept) first, so that a broken body is said as such
    try:
        payload = request.get_json(silent=True)
    except RecursionError:  # nesting deeper than the JSON parser can follow
        payload = None
    if not isinstance(payload, dict):
        raise ApiError(
            "bad-json",
            "the request body must be a JSON object with Content-Type: application/json",
            status=400,
        )
    if members is not None:
        unknown = sorted(set(payload) - set(members))
        if unknown:
            named = ", ".join(shown_value(name) for name in unknown[:5])
            raise ApiError(
                "bad-field",
                f"unknown field{'s' if len(unknown) > 1 else ''} {named}"
                f"{' and more' if len(unknown) > 5 else ''}; expected {expected}",
                status=422,
            )
    return payload
