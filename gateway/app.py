"""The node's Flask application factory.

``create_app`` builds one node's app from its instance folder (or a ready
:class:`~gateway.node.Node` in tests) and registers one blueprint per area:
the peer API of PROTOCOL §7 under ``/xb1``, the agency API under ``/api/v1``
and health checks. One error handler turns every refusal into one JSON shape,
``{"error": CODE, "message": TEXT}``; a database that cannot be used (a full
disk, a lock held too long, a lost connection) gives a logged
``storage-unavailable`` 503 with ``Retry-After``; other unexpected exceptions
become a logged ``internal-error`` 500 without internals in the answer.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from gateway.config import load_settings
from gateway.db import missing_table, unavailable
from gateway.errors import SECURITY_HEADERS, ConfigError, GatewayError
from gateway.node import Node
from keys.sealed import KeyFileError
from keys.trustlist import TrustError

log = logging.getLogger(__name__)

STORAGE_RETRY_AFTER = 30  # seconds, in the Retry-After of a storage-unavailable answer

HTTP_CODES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
    415: "unsupported-media-type",
}


APP_LOAD_ERROR = 4  # gunicorn's Arbiter.APP_LOAD_ERROR: the master halts


def start_failure(error: BaseException) -> str | None:
    """The one line (``error [code]: message``) saying why a node cannot start, for the
    errors an operator fixes (a setting, the key file or its passphrase, the database);
    None for anything else, which keeps its traceback."""
    if isinstance(error, (GatewayError, KeyFileError, TrustError)):
        return f"error [{error.code}]: {error.message}"
    if isinstance(error, FileNotFoundError):
        return (
            f"error [file-not-found]: {error.filename}: no such file; check the instance "
            "folder (GATEWAY_INSTANCE), or restore the file from a backup"
        )
    if isinstance(error, OperationalError):
        return f"error [database-unavailable]: {unavailable(error)}"
    return None


def create_or_exit() -> Flask:
    """The app of the node ``GATEWAY_INSTANCE`` names, for gunicorn: when the node cannot
    start, the line of :func:`start_failure` on standard error and gunicorn's app-load
    status (which stops the server) instead of a traceback."""
    try:
        return create_app()
    except Exception as error:
        line = start_failure(error)
        if line is None:
            raise
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        raise SystemExit(APP_LOAD_ERROR) from None


def create_app(
    instance: str | os.PathLike[str] | None = None, *, node: Node | None = None, **overrides: Any
) -> Flask:
    if node is None:
        folder = instance or os.environ.get("GATEWAY_INSTANCE") or "instance"
        if instance is None and os.environ.get("GATEWAY_INSTANCE", "x").strip() == "":
            # As the commands refuse it: an empty name is not the default folder.
            raise ConfigError(
                "config-value",
                "GATEWAY_INSTANCE is empty; set it to the node's instance folder, e.g. "
                "/srv/xb1/kz (an empty name would be the current folder's 'instance')",
            )
        node = Node(load_settings(folder, **overrides))
    app = Flask(__name__, instance_path=node.settings.instance)
    # "//" in a path would otherwise be answered with an HTML redirect, not our JSON shape.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = node.settings.max_envelope_bytes + 4096
    app.extensions["gateway"] = node

    from gateway.api.admin import admin_api
    from gateway.api.agency import agency
    from gateway.api.health import health
    from gateway.api.peer import peer

    app.register_blueprint(peer)
    app.register_blueprint(agency)
    app.register_blueprint(admin_api)
    app.register_blueprint(health)

    @app.errorhandler(GatewayError)
    def _gateway_error(error: GatewayError):  # type: ignore[no-untyped-def]
        return jsonify(error.to_json()), error.status, error.headers

    @app.errorhandler(TrustError)
    def _trust_error(error: TrustError):  # type: ignore[no-untyped-def]
        # A trust list (or a key lookup) that does not verify: the request's fault.
        return jsonify({"error": error.code, "message": error.message}), 400

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        status = error.code or 500
        code = HTTP_CODES.get(status, "http-error")
        answer = jsonify({"error": code, "message": error.description})
        # A 405 names the methods the path takes (RFC 9110 §15.5.6), as the framework's
        # own answer would have.
        allowed = dict(error.get_headers()).get("Allow")
        if allowed:
            answer.headers["Allow"] = allowed
        return answer, status

    # A full disk, a lock held too long, a database that went away (SQLAlchemy's
    # class, and the driver's own, raised by the receive path's driver statements).
    storage_errors = (OperationalError, node.engine.dialect.loaded_dbapi.OperationalError)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):  # type: ignore[no-untyped-def]
        if missing_table(error):  # on SQLite an OperationalError, on PostgreSQL not
            log.exception("the database lacks a table of the node")
            answer = jsonify(
                {
                    "error": "database-damaged",
                    "message": "the node's database lacks one of its tables, so the request "
                    "was not completed; retry later (an envelope as it is, a submission with "
                    "the same Idempotency-Key); operator: restore the database from a backup",
                }
            )
            answer.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
            return answer, 503
        if isinstance(error, storage_errors):
            log.exception("the database could not be used")
            answer = jsonify(
                {
                    "error": "storage-unavailable",
                    "message": "the node could not use its database (a full disk, a lock "
                    "held too long or a lost connection), so the request was not completed; "
                    "retry later (an envelope as it is, a submission with the same "
                    "Idempotency-Key so that it is not stored twice)",
                }
            )
            answer.headers["Retry-After"] = str(STORAGE_RETRY_AFTER)
            return answer, 503
        log.exception("unexpected error")
        return jsonify(
            {
                "error": "internal-error",
                "message": "the node hit an internal error; the operator's log has the details",
            }
        ), 500

    @app.after_request
    def _security_headers(response):  # type: ignore[no-untyped-def]
        # A header a view set itself is kept. (Werkzeug's Headers.setdefault raises and
        # catches an exception for each header it adds: four per answer.)
        headers = response.headers
        present = {name.lower() for name, _ in headers.items()}
        for name, value in SECURITY_HEADERS:
            if name.lower() not in present:
                headers.add(name, value)
        return response

    return app


def current_node() -> Node:
    from flask import current_app

    return current_app.extensions["gateway"]  # type: ignore[no-any-return]
