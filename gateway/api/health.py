"""Liveness and readiness: readiness fails, with the reason, when the node cannot
do its job (no trust list, an expired one, or no database)."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from gateway.app import current_node
from gateway.errors import GatewayError

health = Blueprint("health", __name__)


@health.get("/healthz")
def live():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok", "node": current_node().id})


@health.get("/readyz")
def ready():  # type: ignore[no-untyped-def]
    node = current_node()
    alarms = []
    try:
        with node.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        alarms.append({"code": "database-unavailable", "message": str(e).splitlines()[0][:300]})
    else:
        try:
            node.require_sending_allowed(int(time.time()))
        except GatewayError as e:
            alarms.append({"code": e.code, "message": e.message})
        except SQLAlchemyError as e:
            alarms.append({"code": "database-unavailable", "message": str(e).splitlines()[0][:300]})
    status = 200 if not alarms else 503
    return jsonify(
        {"status": "ready" if not alarms else "not-ready", "node": node.id, "alarms": alarms}
    ), status
