"""Portable evidence for one message (PROTOCOL §6): export from a node, check offline.

A bundle is one JSON object holding everything needed to check, with no database
and no network, what this node did with one message:

* ``trust_list``: the node's current trust list (§5 wire form) — its anchor
  (SHA-256 of L) is printed by the checker, for comparison with the published one;
* ``node``: the exporting node; ``checkpoint``: its latest signed checkpoint,
  with any co-signatures it holds;
* ``entries``: every audit entry that names the message, each with its position
  and an RFC 9162 inclusion proof against that checkpoint;
* ``envelopes`` and ``receipts``: the exact bytes sent or received, and the signed
  receipts, as base64url.

:func:`check` verifies all of it and raises :class:`EvidenceError` naming the
first thing that does not hold; any changed byte fails.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from sqlalchemy import select

from gateway.audit import merkle, note
from gateway.audit.log import latest, open_checkpoint
from gateway.envelope import (
    Limits,
    ReceiptInvalid,
    Rejected,
    step1_parse_outer,
    step2_parse_header,
    step3_find_sender_key,
    step4_verify_signature,
    verify_receipt,
)
from gateway.models import AuditEntry, Delivery, InboundMessage, OutboundMessage, SealedEnvelope
from keys.trustlist import TrustError, TrustList
from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

FORMAT = "xb1-evidence/1"


class EvidenceError(Exception):
    code = "evidence-invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def export(node: Any, message_id: str) -> dict[str, Any]:
    """The bundle for ``message_id`` (an envelope or outbound message id)."""
    with node.sessions() as session:
        checkpoint = latest(session)
        if checkpoint is None:
            raise EvidenceError(
                "the node has no signed checkpoint yet: run 'gateway audit checkpoint' first"
            )
        leaves = list(
            session.scalars(
                select(AuditEntry.leaf_hash)
                .where(AuditEntry.seq <= checkpoint.size)
                .order_by(AuditEntry.seq)
            )
        )
        entries = []
        for row in session.scalars(
            select(AuditEntry).where(AuditEntry.seq <= checkpoint.size).order_by(AuditEntry.seq)
        ):
            if message_id.encode() not in row.entry:
                continue
            proof = merkle.inclusion_proof(leaves, row.seq - 1)
            entries.append(
                {"seq": row.seq, "entry": b64e(row.entry), "proof": [b64e(h) for h in proof]}
            )
        envelopes, receipts = [], []
        outbound = session.get(OutboundMessage, message_id)
        if outbound is not None:
            for envelope in session.scalars(
                select(SealedEnvelope).where(SealedEnvelope.message_id == message_id)
            ):
                envelopes.append(b64e(envelope.wire))
            for delivery in session.scalars(
                select(Delivery).where(Delivery.message_id == message_id)
            ):
                if delivery.receipt:
                    receipts.append(b64e(delivery.receipt))
        for inbound in session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == message_id)
        ):
            envelopes.append(b64e(inbound.wire))
            receipts.append(b64e(inbound.receipt))
    if not entries and not envelopes:
        raise EvidenceError(f"this node has no record of message {message_id}")
    return {
        "format": FORMAT,
        "node": node.id,
        "message": message_id,
        "trust_list": node.trust().to_wire().decode("utf-8"),
        "checkpoint": checkpoint.note,
        "entries": entries,
        "envelopes": envelopes,
        "receipts": receipts,
    }


def _trust_list(bundle: dict[str, Any]) -> TrustList:
    wire = bundle["trust_list"].encode("utf-8")
    try:
        outer = xb1json.loads(wire)
        raw = b64d(outer["list"])
        return TrustList.from_pinned(wire, hashlib.sha256(raw).digest())
    except (TrustError, WireFormatError, KeyError, TypeError) as e:
        raise EvidenceError(f"the trust list does not verify: {e}") from e


def check(bundle: object, now: int | None = None) -> dict[str, Any]:
    """Verify a bundle offline; returns a summary (anchor to compare, what was shown)."""
    at = int(time.time()) if now is None else now
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise EvidenceError(f"not an {FORMAT} bundle")
    try:
        trust_list = _trust_list(bundle)
        node_id, message_id = bundle["node"], bundle["message"]
        opened = open_checkpoint(bundle["checkpoint"], trust_list, node_id)
        if opened is None:
            raise EvidenceError(f"the checkpoint is not signed by {node_id}'s keys")
        checkpoint = opened[1]
        shown: list[str] = []
        hashes: set[tuple[str, str]] = set()
        for item in bundle["entries"]:
            entry = b64d(item["entry"])
            proof = [b64d(h, length=32) for h in item["proof"]]
            if not merkle.verify_inclusion(
                merkle.leaf_hash(entry), item["seq"] - 1, checkpoint.size, proof, checkpoint.root
            ):
                raise EvidenceError(f"entry {item['seq']} is not in the signed log")
            parsed = xb1json.loads(entry)
            shown.append(parsed["kind"])
            if "ph" in parsed:
                hashes.add((parsed["ph"], parsed["ch"]))
        for text in bundle["envelopes"]:
            raw = b64d(text)
            envelope = step2_parse_header(
                *step1_parse_outer(raw, Limits(max_bytes=16 * 1024 * 1024))
            )
            step4_verify_signature(
                envelope, step3_find_sender_key(envelope, trust_list.keys, envelope.header.iat)
            )
            if hashes and (b64e(envelope.ph), b64e(envelope.ch)) not in hashes:
                raise EvidenceError("an envelope is not the one the audit entries name")
            for receipt in bundle["receipts"]:
                try:
                    verify_receipt(b64d(receipt), trust=trust_list.keys, now=at, envelope=envelope)
                except ReceiptInvalid:
                    continue
                shown.append("receipt")
    except (KeyError, TypeError, ValueError, WireFormatError, note.NoteError, Rejected) as e:
        raise EvidenceError(f"the bundle does not verify: {e}") from e
    if "receipt" not in shown and bundle["receipts"]:
        raise EvidenceError("no receipt in the bundle names its envelope")
    return {
        "node": node_id,
        "message": message_id,
        "checkpoint_size": checkpoint.size,
        "trust_list_version": trust_list.version,
        "trust_list_sha256": trust_list.sha256.hex(),
        "shown": shown,
    }
