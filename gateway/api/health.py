"""Liveness and readiness: readiness fails, with the reason, when the node cannot
do its job (no trust list, an expired one, keys the list does not carry, or no
database)."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError

from gateway.app import current_node
from gateway.db import clock_offset, missing_table
from gateway.errors import GatewayError, NodeStateError
from gateway.models import TrustHint
from gateway.node import listing_problems
from keys.sealed import KeyFileError

health = Blueprint("health", __name__)


@health.get("/healthz")
def live():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok", "node": current_node().id})


def _trust_list_behind(node) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """Peers announced a newer trust list that this node could not install."""
    with node.sessions() as session:
        failed = session.scalars(
            select(TrustHint).where(
                TrustHint.last_error.is_not(None), TrustHint.version > node.trust().version
            )
        ).all()
    return [
        {
            "code": "trust-list-behind",
            "message": f"{hint.peer} uses trust list version {hint.version}; following it "
            f"failed: {hint.last_error[:300]}",
        }
        for hint in failed
    ]


def _policy_notices(node) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """What an operator should know of the sharing policy, which does not stop the node
    (it is not an alarm): no policy file (every exchange allowed), or a file that went
    or does not load (the last good policy stays in force)."""
    try:
        policy = node.policy()
    except GatewayError as e:  # a file that never loaded: the node could not have started
        return [{"code": e.code, "message": e.message}]
    if node.policy_problem is not None:
        kept = " (that is none: every exchange is allowed)" if policy.open else ""
        return [{"code": "policy-not-reloaded", "message": node.policy_problem + kept}]
    notices = []
    if policy.open:
        notices.append(
            {
                "code": "no-policy",
                "message": "no policy.toml: every exchange with every member is allowed; "
                "write the node's bilateral agreements there (docs/policy.md)",
            }
        )
    return notices


def _key_alarms(node, trust_list) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """``trust_list`` does not carry this node's keys as the node holds them
    (``gateway keys check``): peers refuse what it sends, or it what they send."""
    return [
        {"code": "key-listing", "message": problem}
        for problem in listing_problems(node.id, node.keys, trust_list)
    ]


def _witness_alarms(node) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """A peer's audit log forked or was rewritten under this node's eyes, or it has
    long left a larger signed log unproven."""
    from gateway.audit import witness

    now = int(time.time())
    with node.sessions() as session:
        return [
            {"code": row.problem_code or "audit-fork", "message": row.problem or ""}
            for row in witness.alarms(session)
        ] + [
            {"code": "audit-unproven", "message": witness.unproven_message(row, now)}
            for row in witness.unproven(session, now, node.settings.checkpoint_interval)
        ]


def _clock_alarms(node) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """This host's clock against a PostgreSQL server's: the bound within which
    dispatchers on several hosts keep their leases apart (gateway/dispatcher.py)."""
    with node.engine.connect() as connection:
        offset = clock_offset(connection)
    bound = node.settings.clock_bound
    if offset is None or abs(offset) <= bound:
        return []
    return [
        {
            "code": "clock-skew",
            "message": f"this host's clock is {offset:+.1f} s off the database server's "
            f"(at most ±{bound:g} s): its dispatchers claim nothing, and envelope times are "
            "judged by a wrong clock; synchronise the clock (NTP)",
        }
    ]


def _database_alarm(error: SQLAlchemyError) -> dict[str, str]:
    # A table of the node missing is damage (restore from a backup), not an outage.
    code = "database-damaged" if missing_table(error) else "database-unavailable"
    return {"code": code, "message": str(error).splitlines()[0][:300]}


@health.get("/readyz")
def ready():  # type: ignore[no-untyped-def]
    node = current_node()
    alarms = []
    try:
        with node.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        alarms.append(_database_alarm(e))
    else:
        try:
            try:
                trust_list = node.require_sending_allowed(int(time.time()))
            except NodeStateError as e:
                if e.code != "trust-list-expired":
                    raise
                # Frozen, and said so; what else is wrong is said too (a list that is
                # behind is often why it expired).
                alarms.append({"code": e.code, "message": e.message})
                trust_list = node.trust()
            alarms.extend(_key_alarms(node, trust_list))
            alarms.extend(_trust_list_behind(node))
            alarms.extend(_witness_alarms(node))
        except (GatewayError, KeyFileError) as e:  # KeyFileError: keys that do not load
            alarms.append({"code": e.code, "message": e.message})
        except SQLAlchemyError as e:
            alarms.append(_database_alarm(e))
        try:  # whatever the trust list's state: a wrong clock is a problem of its own
            alarms.extend(_clock_alarms(node))
        except SQLAlchemyError as e:
            if not any(alarm["code"].startswith("database-") for alarm in alarms):
                alarms.append(_database_alarm(e))
    status = 200 if not alarms else 503
    return jsonify(
        {
            "status": "ready" if not alarms else "not-ready",
            "node": node.id,
            "alarms": alarms,
            "notices": _policy_notices(node),
        }
    ), status
