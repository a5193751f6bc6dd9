"""The agency API (``/api/v1``): submit messages, follow their delivery, read the inbox.

Every call needs a per-agency token (``Authorization: Bearer …``). An agency
sees only the outbound messages it submitted. Reading received messages is a
consultation of personal data: it needs an ``X-Justification`` header (why, e.g. a
case number), which goes into the audit log with who read what and when.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway import access, db, inbox, onward, outbox, tokens
from gateway.api import int_arg, json_object, refuse_head
from gateway.app import current_node
from gateway.errors import ApiError
from gateway.models import Delivery, User, is_row_id
from gateway.policy import Policy
from schemas.common import FORBIDDEN_SINGLE_LINE

agency = Blueprint("agency", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)


@agency.before_request
def _authenticate() -> None:
    refuse_head()
    node = current_node()
    with node.sessions() as session:
        token = tokens.authenticate(
            session, request.headers.get("Authorization"), roles=access.AGENCY_API_ROLES
        )
        session.commit()
        g.agency, g.token_id, g.role = token.agency, token.id, token.role
        # Users are never deleted, only disabled (tokens.authenticate refuses their tokens).
        g.user = session.get_one(User, token.user_id).name if token.user_id else None


JUSTIFICATION_HEADER = "X-Justification"
# The justification is one line of the standard's text (schemas/common.py): no C0/C1
# controls and no bidi embeddings/overrides/isolates, which make a logged line read as
# something else.


def _header_text(raw: str) -> str | None:
    """A header value as the client wrote it: WSGI servers hand header bytes over as
    latin-1 text (PEP 3333), so a UTF-8 value (a justification in Russian or Kazakh)
    is decoded again. None when its bytes are not UTF-8: read as latin-1 instead, two
    different values could become the same text (the byte FF and the UTF-8 of "ÿ")."""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


def _justification() -> str:
    """Why the caller consults received messages: required, one line, 3–500 characters."""
    text = _header_text(request.headers.get(JUSTIFICATION_HEADER, ""))
    raw = "\ufffd" if text is None else text.strip()  # not UTF-8: refused below
    if not raw:
        raise ApiError(
            "justification-required",
            f"reading received messages needs a {JUSTIFICATION_HEADER} header saying why "
            "(e.g. a case number and purpose); it is kept in the audit log",
            status=400,
        )
    if text is None or not 3 <= len(raw) <= 500 or FORBIDDEN_SINGLE_LINE.search(raw):
        raise ApiError(
            "bad-justification",
            f"{JUSTIFICATION_HEADER} must be one line of 3 to 500 characters, in UTF-8",
            status=422,
        )
    return raw


@agency.post("/messages")
def submit_message():  # type: ignore[no-untyped-def]
    payload = json_object(
        ("typ", "body", "to", "audience"), "typ, body, to and optionally audience"
    )
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        key = _header_text(key)  # counted in characters, as written (UTF-8)
        if key is None or not 1 <= len(key) <= 100 or FORBIDDEN_SINGLE_LINE.search(key):
            raise ApiError(
                "bad-idempotency-key",
                "Idempotency-Key must be 1 to 100 characters of UTF-8 on one line, without "
                "control characters or bidirectional overrides",
                status=422,
            )
    body = payload.get("body")
    _require_may_send(payload.get("typ"), body)
    to = payload.get("to")
    if to is not None and not (isinstance(to, list) and all(isinstance(n, str) for n in to)):
        # Checked here too: a correction compares 'to' with the original's recipients.
        raise ApiError(
            "bad-recipients",
            '\'to\' must be a non-empty list of node ids, e.g. ["KG", "UZ"]',
            status=422,
        )
    node = current_node()
    # H2 identifiers not recorded yet: one batch in a transaction of its own, before the
    # submission's transaction (which holds the audit lock) records the rest and checks.
    # On SQLite both transactions' writes queue with the receiving threads on the lock
    # file (gateway/db.py session_factory) instead of sleeping in SQLite's busy handler;
    # a wait for it that times out is answered 503 storage-unavailable, as SQLite's own.
    try:
        onward.index_pending(node.sessions, int(time.time()), batches=1)
    except SQLAlchemyError as e:  # the submission's own check records them
        if isinstance(getattr(e, "orig", None), db.WriterLockTimeout):
            raise  # waiting as long again for the submission's own write: 503 now
        log.warning("recording H2 identifiers before a submission failed: %s", e)
    visible = access.outbound_visible(g.role)  # which of its agency's messages it sees
    with node.sessions() as session:
        submission = outbox.submit(
            session,
            node,
            agency=g.agency,
            typ=payload.get("typ"),
            body=body,
            to=to,
            idempotency_key=key,
            audience=payload.get("audience"),
            token=g.token_id,
            user=g.user,
            types=visible,
            reads=access.readable(g.role),
        )
        session.commit()
        if not submission.created and (
            submission.message.typ != payload.get("typ")
            or not outbox.visible(submission.message, visible)
        ):
            # Another message (perhaps another role's) holds the key: not this one's answer.
            raise ApiError(
                "idempotency-key-reused",
                "this Idempotency-Key was already used for another message of your agency; "
                "use a new key for a new message",
                status=409,
            )
        message = outbox.get_message(session, submission.message.id)
        view = outbox.message_view(message)
    return jsonify(view), 202 if submission.created else 200


@agency.get("/messages")
def list_messages():  # type: ignore[no-untyped-def]
    node = current_node()
    limit = int_arg("limit", 100)
    if not 1 <= limit <= 1000:
        raise ApiError("bad-limit", "limit must be between 1 and 1000", status=422)
    with node.sessions() as session:
        messages = outbox.list_messages(
            session,
            agency=g.agency,
            state=request.args.get("state"),
            limit=limit + 1,  # one more: whether anything older is left
            types=access.outbound_visible(g.role),
            before=request.args.get("before"),
        )
        page = messages[:limit]
        return jsonify(
            {
                "messages": [outbox.message_view(m, with_events=False) for m in page],
                "next_before": page[-1].id if len(messages) > limit else None,
            }
        )


@agency.get("/messages/<message_id>")
def get_message(message_id: str):  # type: ignore[no-untyped-def]
    node = current_node()
    with node.sessions() as session:
        message = outbox.get_message(
            session, message_id, g.agency, types=access.outbound_visible(g.role)
        )
        return jsonify(outbox.message_view(message))


def _require_may_send(typ: object, body: object) -> None:
    """The caller's role may send ``typ`` and, for a correction, the type it corrects."""
    access.require_submit(g.role, typ)
    if typ == "correction/1" and isinstance(body, dict):
        access.require_submit(g.role, body.get("refers_to_type"))


def _require_resend(session: Session, delivery_id: int) -> None:
    """Retrying sends the message again, so it needs what a submission needs
    (:func:`_require_may_send`). Another agency's delivery is left to
    ``outbox.retry``, which answers ``not-found``."""
    delivery = session.get(Delivery, delivery_id) if is_row_id(delivery_id) else None
    if delivery is None or delivery.message.agency != g.agency:
        return
    message = delivery.message
    if not outbox.visible(message, access.outbound_visible(g.role)):  # as if it did not exist
        raise ApiError("not-found", f"no delivery {delivery_id} for this agency", status=404)
    body = json.loads(message.body_json) if message.body_json else None
    _require_may_send(message.typ, body)


@agency.post("/deliveries/<int:delivery_id>/retry")
def retry_delivery(delivery_id: int):  # type: ignore[no-untyped-def]
    node = current_node()
    who = f"agency {g.agency}" + (f" (user {g.user})" if g.user else "")
    with node.sessions() as session:
        _require_resend(session, delivery_id)
        delivery = outbox.retry(
            session, delivery_id, policy=current_node().policy(), agency=g.agency, who=who
        )
        session.commit()
        return jsonify(outbox.delivery_view(delivery))


def _reader(policy: Policy) -> inbox.Reader:
    """The calling agency as an inbox reader: its role's types, its routes."""
    return inbox.Reader(
        agency=g.agency,
        justification=_justification(),
        token=g.token_id,
        user=g.user,
        types=access.readable(g.role),
        routed_to=g.agency if policy.routing else None,
        unrouted_too=policy.agency_type(g.agency) == "central-authority",
    )


@agency.get("/inbox")
def list_inbox():  # type: ignore[no-untyped-def]
    node = current_node()
    policy = node.policy()
    with node.sessions() as session:
        released_after = request.args.get("released_after")
        page = inbox.inbox_page(
            session,
            after=int_arg("after", 0),
            limit=int_arg("limit", 100),
            reader=_reader(policy),
            released_after=None if released_after is None else int_arg("released_after", 0),
        )
        audience = policy.agency_type(g.agency)
        return jsonify(
            {
                "messages": [
                    inbox.inbox_view(m, policy=policy, audience=audience) for m in page.messages
                ],
                "next_after": page.next_after,
                "next_released_after": page.next_released_after,
            }
        )


@agency.get("/inbox/<int:inbound_id>")
def get_inbound(inbound_id: int):  # type: ignore[no-untyped-def]
    node = current_node()
    policy = node.policy()
    with node.sessions() as session:
        message = inbox.get_inbound(session, inbound_id, reader=_reader(policy))
        view = inbox.inbox_view(message, policy=policy, audience=policy.agency_type(g.agency))
        return jsonify(view)
