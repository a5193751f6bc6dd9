"""The admin API (``/api/v1/admin``): the node administration the ``gateway`` command
does, over HTTP, for automation.

Tokens of role ``admin`` may read and change; tokens of role ``observer`` or
``dpo`` may only read; agency tokens open nothing here (and admin tokens open nothing in the agency
API). Every change names who asked (the ``by`` member, plus the token) and is
kept where the CLI keeps it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, g, jsonify, request
from sqlalchemy import select

from gateway import access, inbox, outbox, quarantine, sovereignty, tokens, users
from gateway.api import body_bytes, int_arg, json_object, refuse_head
from gateway.app import current_node
from gateway.envelope import NODE_RE
from gateway.errors import ApiError, NodeStateError
from gateway.models import ApiToken, InboundMessage, Suspension, TrustHint, User
from gateway.node import listing_problems
from keys.fingerprint import fingerprint

admin_api = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")


@admin_api.before_request
def _authenticate() -> None:
    refuse_head()
    node = current_node()
    with node.sessions() as session:
        token = tokens.authenticate(
            session, request.headers.get("Authorization"), roles=access.ADMIN_API_ROLES
        )
        session.commit()
        g.token_id, g.role, g.holder = token.id, token.role, token.agency
        # A person's token (gateway user add, token issue --user) names the person: what
        # is recorded is then who was authenticated, not only what "by" says.
        g.user = session.get_one(User, token.user_id).name if token.user_id else None


def _calling_token() -> str:
    """The calling token as recorded: its id and holder, and the person it belongs to."""
    person = f", user {g.user}" if g.user else ""
    return f"admin token {g.token_id}, {g.holder}{person}"


def changes(view: Callable[..., Any]) -> Callable[..., Any]:
    """Only the admin role may change anything."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if g.role != "admin":
            raise ApiError(
                "wrong-role",
                f"this call changes the node; it needs an admin token, and this one is of "
                f"role {g.role}",
                status=403,
            )
        return view(*args, **kwargs)

    return guarded


_REASON_BY = ("reason", "by")  # the members of a call that changes a decision


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        raise ApiError("bad-field", f"'{name}' must be a string", status=422)
    if "\x00" in value:  # PostgreSQL cannot store it: a 422, not a 500
        raise ApiError("bad-field", f"'{name}' must not contain NUL characters", status=422)
    return value


def _who(payload: dict[str, Any]) -> str:
    """Who asks: the ``by`` member (checked on its own: a name, not empty) and the
    calling token, together at most the 200 characters of any recorded name."""
    by = _text(payload, "by")
    token = f" ({_calling_token()})"
    sovereignty.require_name(by, limit=200 - len(token))
    return by + token


def _caller(payload: dict[str, Any]) -> str:
    """Who asks, for a call where ``by`` may be left out: then the calling token alone."""
    return _who(payload) if "by" in payload else _calling_token()


# ----------------------------------------------------------------------------- trust list


def _trust_view() -> dict[str, Any]:
    node = current_node()
    trust_list = node.trust()
    with node.sessions() as session:
        hints = session.scalars(select(TrustHint).order_by(TrustHint.peer)).all()
        announced = [
            {"peer": h.peer, "version": h.version, "last_error": h.last_error} for h in hints
        ]
    return {
        "federation": trust_list.federation,
        "version": trust_list.version,
        "sha256": trust_list.sha256.hex(),
        "expires": trust_list.expires,
        "expired": trust_list.is_expired(int(time.time())),
        "threshold": trust_list.threshold,
        "nodes": [
            {
                "node": entry.node,
                "name": entry.name,
                "endpoint": entry.endpoint,
                "keys": [
                    {
                        "kid": k.kid,
                        "use": k.use,
                        "status": k.status,
                        "not_before": k.not_before,
                        "not_after": k.not_after,
                        "revoked_at": k.revoked_at,
                        "fingerprint": fingerprint(k.pub),
                    }
                    for k in entry.keys
                ],
            }
            for entry in trust_list.nodes
        ],
        "announced_by_peers": announced,
        # What keeps this node from exchanging under the list with the keys it runs on.
        "key_problems": listing_problems(node.id, node.keys, trust_list),
    }


@admin_api.get("/trust-list")
def trust_list_view():  # type: ignore[no-untyped-def]
    return jsonify(_trust_view())


@admin_api.post("/trust-list")
@changes
def trust_list_install():  # type: ignore[no-untyped-def]
    """Install the next version (the body is the §5 wire form; ``?anchor=`` for v1)."""
    anchor = request.args.get("anchor")
    if anchor is not None and (
        len(anchor) != 64 or not all(c in "0123456789abcdef" for c in anchor.lower())
    ):
        raise ApiError("bad-anchor", "anchor must be 64 hex digits", status=422)
    current_node().install_trust_list(body_bytes(), anchor=anchor.lower() if anchor else None)
    return jsonify(_trust_view()), 201


@admin_api.post("/trust-list/fetch")
@changes
def trust_list_fetch():  # type: ignore[no-untyped-def]
    from gateway.trust_sync import TrustFollower

    # No body: every peer; else a JSON object, optionally {"from": "KG"}.
    payload = json_object(("from",), "optionally from") if body_bytes().strip() else {}
    peer = payload.get("from")
    # A node id as the trust list writes them: an empty one is not "every peer", and
    # nothing else is echoed back in an error.
    if peer is not None and not (isinstance(peer, str) and NODE_RE.match(peer)):
        raise ApiError(
            "bad-field", "'from' must be a node id such as KG (or leave it out)", status=422
        )
    follower = TrustFollower(current_node())
    installed = follower.follow(peer) if peer else follower.run_once()
    return jsonify({"installed": installed.version if installed else None, **_trust_view()})


# ----------------------------------------------------------------------------- keys


@admin_api.get("/keys")
def keys_view():  # type: ignore[no-untyped-def]
    node = current_node()
    ring = node.keys
    try:
        signing: str | None = node.signing_pair().kid
    except NodeStateError:  # the list lets it use none of its signing keys: /readyz says so
        signing = None
    return jsonify(
        {
            "node": node.id,
            "signs_with": signing,
            "keys": [
                {
                    "kid": entry.kid,
                    "use": use,
                    "status": entry.status,
                    "created": entry.created,
                    "fingerprint": fingerprint(entry.pair.public),
                }
                for use, keyring in (("sig", ring.signing), ("enc", ring.encryption))
                for entry in keyring
            ],
        }
    )


# ----------------------------------------------------------------------------- suspensions


def _suspension_view(row: Suspension) -> dict[str, Any]:
    return {
        "id": row.id,
        "scope": row.scope,
        "value": row.value,
        "reason": row.reason,
        "decided_by": row.decided_by,
        "created_at": row.created_at,
        "lifted_at": row.lifted_at,
        "lifted_by": row.lifted_by,
        "lift_reason": row.lift_reason,
    }


@admin_api.get("/suspensions")
def suspensions_view():  # type: ignore[no-untyped-def]
    with current_node().sessions() as session:
        decisions = sovereignty.listing(
            session, include_lifted=request.args.get("all") in ("1", "true")
        )
        return jsonify({"suspensions": [_suspension_view(r) for r in decisions]})


@admin_api.post("/suspensions")
@changes
def suspend():  # type: ignore[no-untyped-def]
    payload = json_object(("scope", "value", "reason", "by"), "scope, value, reason and by")
    node = current_node()
    with node.sessions() as session:
        decision = sovereignty.suspend(
            session,
            scope=_text(payload, "scope"),
            value=_text(payload, "value"),
            reason=_text(payload, "reason"),
            who=_who(payload),
            node=node,
        )
        session.commit()
        node.forget_suspensions()
        return jsonify(_suspension_view(decision)), 201


@admin_api.post("/suspensions/<int:decision_id>/lift")
@changes
def lift(decision_id: int):  # type: ignore[no-untyped-def]
    payload = json_object(_REASON_BY, "reason and by")
    node = current_node()
    with node.sessions() as session:
        decision = sovereignty.lift(
            session, decision_id, reason=_text(payload, "reason"), who=_who(payload)
        )
        session.commit()
        node.forget_suspensions()
        return jsonify(_suspension_view(decision))


# ----------------------------------------------------------------------------- quarantine


def _held_view(row: InboundMessage) -> dict[str, Any]:
    """A message held in quarantine (metadata only: never its body)."""
    return {
        "id": row.id,
        "envelope_id": row.envelope_id,
        "sender": row.sender,
        "typ": row.typ,
        "received_at": row.received_at,
        "quarantined_at": row.quarantined_at,
        "quarantine_reason": row.quarantine_reason,
        "released_at": row.released_at,
        "released_by": row.released_by,
        "release_reason": row.release_reason,
    }


@admin_api.get("/quarantine")
def quarantine_view():  # type: ignore[no-untyped-def]
    """Received messages held because the key that signed them was revoked after they
    arrived and before any agency read them (``gateway inbox quarantined``)."""
    with current_node().sessions() as session:
        return jsonify({"held": [_held_view(m) for m in quarantine.held(session)]})


@admin_api.post("/quarantine/<int:inbound_id>/release")
@changes
def release(inbound_id: int):  # type: ignore[no-untyped-def]
    """Release a held message to the agencies, with who and why (``gateway inbox
    release``)."""
    payload = json_object(_REASON_BY, "reason and by")
    with current_node().sessions() as session:
        message = quarantine.release(
            session, inbound_id, reason=_text(payload, "reason"), who=_who(payload)
        )
        session.commit()
        return jsonify(_held_view(message))


# ----------------------------------------------------------------------------- tokens


def _token_view(row: ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "role": row.role,
        "holder": row.agency,
        "label": row.label,
        "prefix": row.prefix,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
        "last_used_at": row.last_used_at,
    }


@admin_api.get("/tokens")
def tokens_view():  # type: ignore[no-untyped-def]
    with current_node().sessions() as session:
        return jsonify({"tokens": [_token_view(r) for r in tokens.listing(session)]})


@admin_api.post("/tokens")
@changes
def token_issue():  # type: ignore[no-untyped-def]
    payload = json_object(
        ("holder", "role", "user", "label", "by"),
        "holder (and role, agency unless given) or user; optionally label and by",
    )
    if "user" in payload and ("holder" in payload or "role" in payload):
        raise ApiError(
            "bad-field",
            "a user's token is of the user's agency and role: give user without holder "
            "and role, or holder and role without user",
            status=422,
        )
    label = payload.get("label", "")
    if not isinstance(label, str):  # its content: tokens.issue
        raise ApiError("bad-label", "'label' must be a string", status=422)
    with current_node().sessions() as session:
        by = _caller(payload)
        if "user" in payload:
            name = _text(payload, "user")
            if not users.NAME_RE.match(name):  # the database cannot look up every string
                raise ApiError("no-such-user", f"there is no user {name[:40]!r}", status=404)
            person = users.get(session, name)
            issued = tokens.issue(session, person.agency, label, user=person, by=by)
        else:
            issued = tokens.issue(
                session,
                _text(payload, "holder"),
                label,
                role=payload.get("role", "agency"),
                by=by,
            )
        session.commit()
        row = session.get(ApiToken, issued.id)
        assert row is not None
        return jsonify({**_token_view(row), "secret": issued.secret}), 201


@admin_api.post("/tokens/<int:token_id>/revoke")
@changes
def token_revoke(token_id: int):  # type: ignore[no-untyped-def]
    if token_id == g.token_id:
        raise ApiError(
            "own-token", "a token cannot revoke itself; use another admin token", status=409
        )
    payload = json_object(("by",), "optionally by") if body_bytes().strip() else {}
    with current_node().sessions() as session:
        row, _ = tokens.revoke(session, token_id, by=_caller(payload))
        session.commit()
        return jsonify(_token_view(row))


# ----------------------------------------------------------------------------- deliveries


PAGE_DEFAULT, PAGE_MOST = 200, 1000


def _page_limit() -> int:
    limit = int_arg("limit", PAGE_DEFAULT)
    if not 1 <= limit <= PAGE_MOST:
        raise ApiError("bad-limit", f"limit must be between 1 and {PAGE_MOST}", status=422)
    return limit


@admin_api.get("/deliveries")
def deliveries_view():  # type: ignore[no-untyped-def]
    """Outbound messages of every agency with their delivery states (no bodies), newest
    first, a page at a time (``limit``, ``before``: ``next_before`` of the page before)."""
    limit = _page_limit()
    with current_node().sessions() as session:
        messages = outbox.list_messages(
            session,
            state=request.args.get("state"),
            limit=limit + 1,  # one more: whether anything older is left
            before=request.args.get("before"),
        )
        page = messages[:limit]
        return jsonify(
            {
                "messages": [outbox.message_view(m, with_events=False) for m in page],
                "next_before": page[-1].id if len(messages) > limit else None,
            }
        )


@admin_api.get("/rejections")
def rejections_view():  # type: ignore[no-untyped-def]
    """Refused inbound envelopes (metadata; the sender is as claimed unless signed),
    newest first, a page at a time (``limit``, ``before``: ``next_before`` of the
    page before)."""
    limit = _page_limit()
    before = int_arg("before", 0) if request.args.get("before") is not None else None
    with current_node().sessions() as session:
        rows = inbox.list_rejections(session, limit=limit + 1, before=before)
        page = rows[:limit]
        return jsonify(
            {
                "rejections": [
                    {
                        "id": r.id,
                        "received_at": r.received_at,
                        "code": r.code,
                        "detail": r.detail,
                        "sender": r.sender,
                        "envelope_id": r.envelope_id,
                        "signed": r.authenticated,
                        "size": r.size,
                    }
                    for r in page
                ],
                "next_before": page[-1].id if len(rows) > limit else None,
            }
        )


# ----------------------------------------------------------------------------- users


def _user_view(row: User) -> dict[str, Any]:
    return {
        "name": row.name,
        "full_name": row.full_name,
        "agency": row.agency,
        "role": row.role,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "disabled_at": row.disabled_at,
        "disabled_by": row.disabled_by,
        "disabled_reason": row.disabled_reason,
    }


@admin_api.get("/users")
def users_view():  # type: ignore[no-untyped-def]
    with current_node().sessions() as session:
        return jsonify({"users": [_user_view(u) for u in users.listing(session)]})


@admin_api.post("/users")
@changes
def user_add():  # type: ignore[no-untyped-def]
    payload = json_object(
        ("name", "full_name", "agency", "role", "by"), "name, full_name, agency, role and by"
    )
    with current_node().sessions() as session:
        row = users.add(
            session,
            _text(payload, "name"),
            full_name=_text(payload, "full_name"),
            agency=_text(payload, "agency"),
            role=_text(payload, "role"),
            by=_who(payload),
        )
        session.commit()
        return jsonify(_user_view(row)), 201


@admin_api.post("/users/<name>/disable")
@changes
def user_disable(name: str):  # type: ignore[no-untyped-def]
    payload = json_object(_REASON_BY, "reason and by")
    if not users.NAME_RE.match(name):  # never a user; "\x00" would break PostgreSQL
        raise ApiError("no-such-user", f"there is no user {name[:64]!r}", status=404)
    with current_node().sessions() as session:
        row, _ = users.disable(session, name, reason=_text(payload, "reason"), by=_who(payload))
        session.commit()
        return jsonify(_user_view(row))


# ----------------------------------------------------------------------------- oversight


@admin_api.get("/oversight")
def oversight_view():  # type: ignore[no-untyped-def]
    """The data protection officer's report (``gateway/audit/oversight.py``) for
    ``?since=YYYY-MM-DD&until=YYYY-MM-DD``; asking for it is itself recorded."""
    from gateway.audit import oversight

    result = oversight.report_for(
        current_node(),
        request.args.get("since"),
        request.args.get("until"),
        by=f"{g.role} {g.holder} (token {g.token_id}{', user ' + g.user if g.user else ''})",
    )
    return jsonify(result)
