"""HTTP blueprints: ``peer`` (node to node, PROTOCOL §7), ``agency``, ``admin_api``,
``health``; and the one JSON-body reader they share."""

from typing import Any

from flask import request
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from gateway.errors import ApiError

#: What reading a request body raises when the client framed it badly: gunicorn's
#: parse errors (a chunk size that is not hex, a chunk without its terminator), an
#: ``OSError`` (a body cut short), and werkzeug's ``ClientDisconnected``, which its
#: input stream raises for an ``OSError`` of the server's stream.
UNREADABLE_BODY = (ParseException, OSError, ClientDisconnected)


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


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``bad-json`` (never a 500); a 400
    ``bad-body`` when the body could not be read as framed."""
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
    return payload
