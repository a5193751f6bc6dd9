"""The peer API of PROTOCOL §7. Views are thin: the inbox service does the work."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from gateway.api import UNREADABLE_BODY
from gateway.app import current_node
from gateway.audit import log as audit
from gateway.envelope import NODE_RE, Rejected
from gateway.errors import ApiError
from gateway.inbox import STATUS, receive, refuse_unread
from gateway.models import is_row_id

if TYPE_CHECKING:
    from gateway.node import Node

peer = Blueprint("peer", __name__, url_prefix="/xb1")

MEDIA_TYPE = "application/xb1+json"


@peer.post("/envelopes")
def post_envelope() -> Response:
    node = current_node()
    length = request.content_length
    if length is not None and length > node.limits.max_bytes:
        error = Rejected(
            "too-large", f"envelope is {length} bytes; the limit is {node.limits.max_bytes}"
        )
        return _refused_unread(node, error, min(length, 2**31 - 1))
    try:
        if length is not None:
            # The announced length, read straight from the server's input stream
            # (gunicorn and the test servers stop at it), without the request's wrapper
            # stream: a tenth of a worker's time on this route outside receive() went
            # into building and draining that wrapper. A body shorter than announced
            # (the peer hung up) is what arrived: refused as malformed and recorded,
            # like any bad envelope.
            raw = request.environ["wsgi.input"].read(length)
        else:  # chunked: the wrapper knows where the body ends
            raw = request.get_data(cache=False)
    except UNREADABLE_BODY as e:  # chunks the server cannot read (a bad size, …), a reset
        error = Rejected(
            "malformed",
            f"the body could not be read ({type(e).__name__}); send the envelope again whole, "
            "with Content-Length or as well-formed chunks",
        )
        return _refused_unread(node, error, length or 0)
    answer = receive(node, raw)
    mimetype = MEDIA_TYPE if answer.body.startswith(b'{"protected"') else "application/json"
    return Response(answer.body, status=answer.status, mimetype=mimetype)


@peer.get("/trust-list")
def get_trust_list() -> Response:
    return Response(current_node().trust().to_wire(), mimetype="application/json")


@peer.get("/checkpoint")
def get_checkpoint() -> Response:
    """The latest signed audit checkpoint (C2SP signed note, PROTOCOL §6)."""
    with current_node().sessions() as session:
        row = audit.latest(session)
        if row is None:
            raise ApiError(
                "no-checkpoint", "this node has not signed an audit checkpoint yet", status=404
            )
        return Response(row.note, mimetype="text/plain; charset=utf-8")


def _size_arg(name: str) -> int:
    raw = request.args.get(name, "")
    # ASCII digits only: "²" is a digit to str.isdigit, not to int().
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        raise ApiError(
            "bad-parameter", f"query parameter {name} must be a positive integer", status=422
        )
    return int(raw)


@peer.get("/witness/<peer_id>")
def get_witnessed(peer_id: str) -> Response:
    """The last checkpoint of ``peer_id`` this node verified, with its co-signature."""
    from gateway.models import WitnessState

    with current_node().sessions() as session:
        # Only what could be a node id is looked up (PostgreSQL refuses a NUL in text).
        state = session.get(WitnessState, peer_id) if NODE_RE.match(peer_id) else None
        if state is None:
            raise ApiError("not-found", f"this node has not witnessed {peer_id[:20]!r}", status=404)
        return Response(state.cosigned, mimetype="text/plain; charset=utf-8")


@peer.get("/proofs/inclusion")
def get_inclusion_proof() -> Response:
    """?index=I&size=N: the RFC 9162 inclusion proof of entry I (1-based) in tree N."""
    with current_node().sessions() as session:
        proof = audit.inclusion(session, _size_arg("index"), _size_arg("size"))
    return Response(json.dumps(proof), mimetype="application/json")


@peer.get("/proofs/consistency")
def get_consistency_proof() -> Response:
    """?old=M&new=N: the RFC 9162 consistency proof between trees M and N."""
    with current_node().sessions() as session:
        proof = audit.consistency(session, _size_arg("old"), _size_arg("new"))
    return Response(json.dumps(proof), mimetype="application/json")


@peer.get("/trust-list/versions/<int:version>")
def get_trust_list_version(version: int) -> Response:
    """An earlier installed version, so a peer that is several versions behind can
    walk the chain (an extension of PROTOCOL §7; the answer is the §5 wire form)."""
    wire = current_node().trust_list_version(version) if is_row_id(version) else None
    if wire is None:
        raise ApiError("not-found", f"this node has no trust list version {version}", status=404)
    return Response(wire, mimetype="application/json")


def _now() -> int:
    return int(time.time())


def _refused_unread(node: Node, error: Rejected, size: int) -> Response:
    """A refusal decided without the envelope's bytes: recorded, and its answer."""
    refuse_unread(node, error, size, _now())
    return Response(
        _error_json(error), status=STATUS.get(error.code, 400), mimetype="application/json"
    )


def _error_json(error: Rejected) -> bytes:
    return json.dumps({"error": error.code, "message": error.message}).encode()
