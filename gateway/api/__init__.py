"""HTTP blueprints: ``peer`` (node to node, PROTOCOL §7), ``agency``, ``admin_api``,
``health``; and the one JSON-body reader they share."""

from typing import Any

from flask import request

from gateway.errors import ApiError


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``bad-json`` (never a 500)."""
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
