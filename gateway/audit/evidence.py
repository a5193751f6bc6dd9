"""Portable evidence for one message (PROTOCOL §6): export from a node, check offline.

A bundle is one JSON object holding everything needed to check, with no database
and no network, what this node did with one message:

* ``trust_list``: the node's current trust list (§5 wire form), and
  ``trust_chain``: the versions the node installed before it, oldest first. The
  checker walks the chain from the oldest (version 1, whose SHA-256 of L is the
  federation's anchor) with the successor rules of §5: against the anchor given
  with ``--anchor``, or printing it for comparison with the published one;
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
from typing import Any, NamedTuple

from sqlalchemy import select

from gateway.audit import log as audit_log
from gateway.audit import merkle, note
from gateway.audit.log import cosigned, latest, open_checkpoint, origin_of
from gateway.envelope import (
    UUID_RE,
    Envelope,
    Limits,
    Receipt,
    ReceiptInvalid,
    Rejected,
    step1_parse_outer,
    step2_parse_header,
    step3_find_sender_key,
    step4_verify_signature,
    verify_receipt,
)
from gateway.models import (
    AuditCheckpoint,
    AuditEntry,
    Delivery,
    InboundMessage,
    OutboundMessage,
    SealedEnvelope,
    TrustListVersion,
)
from keys.trustlist import TrustError, TrustList
from schemas import xb1json
from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

FORMAT = "xb1-evidence/1"
ENTRY_MEMBERS = frozenset({"seq", "entry", "proof"})


class EvidenceError(Exception):
    code = "evidence-invalid"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


def _receipt_shown(receipt: Receipt) -> str:
    """How a verified receipt is named in the summary: who signed it and what it says
    (a signed refusal is not a delivery)."""
    said = receipt.status if receipt.reason is None else f"{receipt.status} {receipt.reason}"
    return f"receipt from {receipt.signer.node} {said}"


def _named_envelopes(
    entries: list[dict[str, Any]], node_id: str
) -> dict[tuple[str, str, str], tuple[str, frozenset[str]]]:
    """The envelopes the (parsed) entries name, by (envelope id, ph, ch): their sender
    and recipients. Sent ones (message-submitted, message-resealed) go from
    ``node_id`` to the entry's ``to``; an accepted one (envelope-accepted) from its
    ``sender`` to ``node_id``."""
    named: dict[tuple[str, str, str], tuple[str, frozenset[str]]] = {}
    for parsed in entries:
        kind = parsed.get("kind")
        if "ph" not in parsed or "ch" not in parsed:
            continue
        if kind == "message-submitted":
            key, parties = parsed["id"], (node_id, frozenset(parsed["to"]))
        elif kind == "message-resealed":
            key, parties = parsed["envelope"], (node_id, frozenset([parsed["to"]]))
        elif kind == "envelope-accepted":
            key, parties = parsed["id"], (parsed["sender"], frozenset([node_id]))
        else:
            continue
        named[(key, parsed["ph"], parsed["ch"])] = parties
    return named


def export(node: Any, message_id: str) -> dict[str, Any]:
    """The bundle for ``message_id`` (an envelope or outbound message id).

    Of the checkpoints that cover every entry naming the message, the bundle takes
    the one with the most co-signatures (then the newest), so that a verifier sees
    which other states witnessed the same log.
    """
    if not UUID_RE.match(message_id):
        raise EvidenceError(
            f"{message_id[:40]!r} is not a message id (a lowercase UUID)", "bad-message-id"
        )
    needle = message_id.encode()
    with node.sessions() as session:
        if latest(session) is None:
            raise EvidenceError(
                "the node has no signed checkpoint yet: run 'gateway audit checkpoint' first"
            )
        # Every entry is read once, in batches, so memory stays flat however long the log.
        seqs = [
            seq
            for seq, entry in audit_log.stream(
                session, select(AuditEntry.seq, AuditEntry.entry).order_by(AuditEntry.seq)
            )
            if needle in entry
        ]
        covering = list(
            session.scalars(
                select(AuditCheckpoint).where(AuditCheckpoint.size >= (seqs[-1] if seqs else 0))
            )
        )
        if not covering:
            raise EvidenceError(
                f"the entries about {message_id} are newer than the last checkpoint: "
                "run 'gateway audit checkpoint' first"
            )
        # Of the checkpoints that still verify today, the most co-signed, then the newest;
        # lines by keys revoked since are left out, so that the bundle checks.
        trust_list = node.trust()
        now = int(time.time())
        usable = [
            (evidence, row)
            for row in covering
            if (evidence := _as_evidence(row, trust_list, node.id, now)) is not None
        ]
        if not usable:
            raise EvidenceError(
                "no checkpoint covering the entries is signed by a key of this node that is "
                "usable now: run 'gateway audit checkpoint' first"
            )
        (note_text, _), checkpoint = max(usable, key=lambda pair: (pair[0][1], pair[1].size))
        entries = []
        for seq in seqs:
            row = session.get(AuditEntry, seq)
            proof = audit_log.inclusion(session, seq, checkpoint.size)["proof"]
            entries.append({"seq": seq, "entry": b64e(row.entry), "proof": proof})
        envelopes, receipts = [], []
        outbound = session.get(OutboundMessage, message_id)
        if outbound is not None:
            for envelope in session.scalars(
                select(SealedEnvelope).where(SealedEnvelope.message_id == message_id)
            ):
                if envelope.wire:  # empty once purged
                    envelopes.append(b64e(envelope.wire))
            for delivery in session.scalars(
                select(Delivery).where(Delivery.message_id == message_id)
            ):
                if delivery.receipt:
                    receipts.append(b64e(delivery.receipt))
        for inbound in session.scalars(
            select(InboundMessage).where(InboundMessage.envelope_id == message_id)
        ):
            if inbound.wire:  # empty once purged
                envelopes.append(b64e(inbound.wire))
            receipts.append(b64e(inbound.receipt))
        # What was signed with a key revoked since proves nothing now and would fail the
        # check: such receipts are left out, and with such an envelope all envelopes (the
        # bundle is then as after a purge: the entries' hashes and the receipts naming them).
        receipts = [text for text in receipts if _receipt_signed(b64d(text), trust_list, now)]
        if not all(_still_signed(b64d(text), trust_list, now) for text in envelopes):
            envelopes = []
    if not entries and not envelopes:
        raise EvidenceError(f"this node has no record of message {message_id}")
    return {
        "format": FORMAT,
        "node": node.id,
        "message": message_id,
        "trust_list": trust_list.to_wire().decode("utf-8"),
        "trust_chain": _chain_below(node, trust_list.version),
        "checkpoint": note_text,
        "entries": entries,
        "envelopes": envelopes,
        "receipts": receipts,
    }


def _chain_below(node: Any, version: int) -> list[str]:
    """The versions this node installed before ``version``, oldest first: with them a
    checker walks from the federation's published anchor (version 1) to the list
    the bundle's signatures are checked with."""
    with node.sessions() as session:
        return [
            wire.decode("utf-8")
            for wire in session.scalars(
                select(TrustListVersion.wire)
                .where(TrustListVersion.version < version)
                .order_by(TrustListVersion.version)
            )
        ]


class _Trust(NamedTuple):
    current: TrustList
    first: TrustList  # the oldest version the bundle carries: its anchor is compared


def _trust_list(bundle: dict[str, Any], anchor: bytes | None, now: int) -> _Trust:
    """The bundle's trust list, verified along its chain from the oldest version it
    carries: against ``anchor`` when the checker gives one, else self-pinned (then the
    printed anchor must be compared with the published one)."""
    chain = bundle.get("trust_chain", [])
    if not isinstance(bundle.get("trust_list"), str) or not (
        isinstance(chain, list) and all(isinstance(wire, str) for wire in chain)
    ):
        raise EvidenceError(
            "the bundle's trust_list must be the trust list as a string, and its "
            "trust_chain a list of such strings"
        )
    wires = [wire.encode("utf-8") for wire in [*chain, bundle["trust_list"]]]
    try:
        if anchor is not None:
            first = TrustList.from_anchor(wires[0], anchor, now)
        else:
            raw = b64d(xb1json.loads(wires[0])["list"])
            first = TrustList.from_pinned(wires[0], hashlib.sha256(raw).digest())
        current = first.verify_chain(wires[1:], now, installed=True) if chain else first
    except (TrustError, WireFormatError, KeyError, TypeError) as e:
        raise EvidenceError(f"the trust list does not verify: {e}") from e
    return _Trust(current, first)


def check(bundle: object, now: int | None = None, *, anchor: bytes | None = None) -> dict[str, Any]:
    """Verify a bundle offline; returns a summary (what was shown, and the anchor its
    trust list follows from: ``anchor`` when given, else one to compare with the
    published anchor)."""
    at = int(time.time()) if now is None else now
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise EvidenceError(f"not an {FORMAT} bundle")
    for member in ("entries", "envelopes", "receipts"):
        if not isinstance(bundle.get(member), list):
            raise EvidenceError(f"the bundle's {member} must be a list")
    if not bundle["entries"] and not bundle["envelopes"]:
        raise EvidenceError("the bundle shows nothing: it holds no audit entry and no envelope")
    try:
        trust = _trust_list(bundle, anchor, at)
        trust_list = trust.current
        node_id, message_id = bundle["node"], bundle["message"]
        if not isinstance(message_id, str) or not UUID_RE.match(message_id):
            raise EvidenceError("the bundle's message is not a message id (a lowercase UUID)")
        opened = open_checkpoint(bundle["checkpoint"], trust_list, node_id, at)
        if opened is None:
            raise EvidenceError(f"the checkpoint is not signed by {node_id}'s keys")
        checkpoint = opened[1]
        witnesses = _cosigners(bundle["checkpoint"], trust_list, node_id, at)
        shown: list[str] = []
        hashes: set[tuple[str, str]] = set()
        parsed_entries: list[dict[str, Any]] = []
        previous = 0
        for item in bundle["entries"]:
            if not isinstance(item, dict) or set(item) != ENTRY_MEMBERS:
                raise EvidenceError("each entry must have exactly seq, entry and proof")
            if type(item["seq"]) is not int or item["seq"] <= previous:
                raise EvidenceError("the entries must be in the log's order, each once")
            previous = item["seq"]
            entry = b64d(item["entry"])
            proof = [b64d(h, length=32) for h in item["proof"]]
            if not merkle.verify_inclusion(
                merkle.leaf_hash(entry), item["seq"] - 1, checkpoint.size, proof, checkpoint.root
            ):
                raise EvidenceError(f"entry {item['seq']} is not in the signed log")
            if message_id.encode() not in entry:  # what export() selects entries by
                raise EvidenceError(f"entry {item['seq']} does not name message {message_id}")
            parsed = xb1json.loads(entry)
            parsed_entries.append(parsed)
            shown.append(parsed["kind"])
            if "ph" in parsed:
                hashes.add((parsed["ph"], parsed["ch"]))
        envelopes: list[Envelope] = []
        for text in bundle["envelopes"]:
            envelope = _signed_envelope(b64d(text), trust_list, at)
            if (
                (b64e(envelope.ph), b64e(envelope.ch)) not in hashes
                if hashes
                else envelope.header.id != message_id
            ):
                raise EvidenceError("an envelope is not the one the audit entries name")
            envelopes.append(envelope)
        for text in bundle["receipts"] if envelopes else ():
            # Every receipt must be a receipt of one of the envelopes, each byte of it
            # (signed by one of its recipients, to its sender: verify_receipt).
            for envelope in envelopes:
                try:
                    receipt = verify_receipt(
                        b64d(text), trust=trust_list.keys, now=at, envelope=envelope
                    )
                except ReceiptInvalid:
                    continue
                shown.append(_receipt_shown(receipt))
                break
            else:
                raise EvidenceError("a receipt does not verify for any envelope of the bundle")
        if not bundle["envelopes"]:
            # Purged: no envelope is left, so each receipt must name an envelope the
            # entries name, by id and by the hashes of its payload and ciphertext, and be
            # signed by a recipient of it, to its sender, as the entries say they were.
            named = _named_envelopes(parsed_entries, node_id)
            for text in bundle["receipts"]:
                try:
                    receipt = verify_receipt(b64d(text), trust=trust_list.keys, now=at)
                except ReceiptInvalid as e:
                    raise EvidenceError(f"a receipt does not verify: {e}") from e
                parties = named.get((receipt.ref, b64e(receipt.ph), b64e(receipt.ch)))
                if parties is None:
                    raise EvidenceError("a receipt names a message the entries do not name")
                sender, recipients = parties
                if receipt.signer.node not in recipients or receipt.to != sender:
                    raise EvidenceError(
                        f"a receipt is signed by {receipt.signer.node} to {receipt.to}, not by "
                        f"a recipient of the envelope ({', '.join(sorted(recipients))}) to its "
                        f"sender ({sender})"
                    )
                shown.append(_receipt_shown(receipt))
            if "purged" in shown:
                shown.append("payload purged")
    except (
        AttributeError,
        KeyError,
        TypeError,
        ValueError,
        WireFormatError,
        note.NoteError,
        Rejected,
    ) as e:
        raise EvidenceError(f"the bundle does not verify: {e}") from e
    return {
        "node": node_id,
        "message": message_id,
        "checkpoint_size": checkpoint.size,
        "trust_list_version": trust_list.version,
        "trust_list_sha256": trust_list.sha256.hex(),
        # The oldest version carried (1 for a node that began at the anchor) and its
        # SHA-256 of L: the federation's anchor, checked when given.
        "anchor_version": trust.first.version,
        "anchor": trust.first.sha256.hex(),
        "anchor_checked": anchor is not None,
        # Keys are judged by the bundle's own list: a later version may have revoked
        # one since. A list past its expiry certainly has a successor.
        "trust_list_expires": trust_list.expires,
        "witnesses": witnesses,
        "shown": shown,
    }


def _cosigners(text: str, trust_list: TrustList, node_id: str, now: int) -> list[str]:
    """The other members whose co-signature on the checkpoint verifies.

    Stricter than signed-note readers, which skip lines by unknown keys: evidence
    must fail when any byte changes, so every line must be a signature of the node
    or a co-signature of another member, and verify.
    """
    lines = _sorted_lines(text, trust_list, node_id, now)
    if lines.problem is not None:
        raise EvidenceError(lines.problem)
    return lines.witnesses


class _Lines(NamedTuple):
    body: str
    good: list[str]  # the signature lines that verify
    signed: bool  # a line of the node's own verifies
    witnesses: list[str]  # the members whose co-signatures verify
    problem: str | None  # what is wrong with the first line that does not


def _sorted_lines(text: str, trust_list: TrustList, node_id: str, now: int) -> _Lines:
    """A signed checkpoint's signature lines sorted into those that verify at ``now``
    (the node's own, and co-signatures of other members by keys not revoked) and not."""
    body, lines = note.signature_lines(text)
    own = origin_of(trust_list.federation, node_id)
    members = {
        origin_of(trust_list.federation, member): member
        for member in trust_list.node_ids
        if member != node_id
    }
    found = _Lines(body, [], False, [], None)
    for name, line in lines:
        member = members.get(name)
        if name == own:
            verified = open_checkpoint(body + "\n" + line, trust_list, node_id, now) is not None
            wrong = f"a signature line of {node_id} does not verify"
            if verified:
                found = found._replace(signed=True)
        elif member is None:
            verified, wrong = False, f"the checkpoint carries a signature by {name!r}, not a member"
        else:
            verified = cosigned(body, line, trust_list, member, now)
            wrong = f"the co-signature of {member} does not verify"
            if verified and member not in found.witnesses:
                found.witnesses.append(member)
        if verified:
            found.good.append(line)
        elif found.problem is None:
            found = found._replace(problem=wrong)
    return found


def _signed_envelope(raw: bytes, trust_list: TrustList, now: int) -> Envelope:
    """The envelope ``raw``, its signature verified with its sender's key as usable at
    ``now`` (PROTOCOL §3 steps 1 to 4); raises ``Rejected``."""
    envelope = step2_parse_header(*step1_parse_outer(raw, Limits(max_bytes=16 * 1024 * 1024)))
    step4_verify_signature(envelope, step3_find_sender_key(envelope, trust_list.keys, now))
    return envelope


def _still_signed(raw: bytes, trust_list: TrustList, now: int) -> bool:
    try:
        _signed_envelope(raw, trust_list, now)
    except Rejected:
        return False
    return True


def _receipt_signed(raw: bytes, trust_list: TrustList, now: int) -> bool:
    try:
        verify_receipt(raw, trust=trust_list.keys, now=now)
    except ReceiptInvalid:
        return False
    return True


def _as_evidence(
    row: AuditCheckpoint, trust_list: TrustList, node_id: str, now: int
) -> tuple[str, int] | None:
    """``row``'s note with only the signature lines that verify now, and how many
    co-signatures it keeps; None when no signature of the node itself verifies (its
    key was revoked since, or is no longer listed)."""
    lines = _sorted_lines(row.note, trust_list, node_id, now)
    if not lines.signed:
        return None
    return lines.body + "\n" + "".join(lines.good), len(lines.witnesses)
