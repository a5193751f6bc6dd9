"""Witnessing peers' audit logs (PROTOCOL §6): fetch, check consistency, co-sign.

For every other member of the federation a node fetches ``GET /xb1/checkpoint``,
verifies the signed note with that member's signing keys from the trust list
(origin ``xb1-audit/<federation>/<peer>``), and compares it with the last
checkpoint it witnessed of that peer:

* first sight: accepted (trust on first use) and co-signed;
* larger: the peer must prove consistency (``GET /xb1/proofs/consistency``); if
  the proof holds, the new checkpoint is co-signed;
* same size and same root: nothing new;
* same size with another root, a smaller size, or a consistency proof that
  fails: the peer's log was forked or rewritten. The last good state is kept, the
  problem is recorded with code ``audit-fork`` or ``audit-rollback``, logged as an
  ERROR alarm and raised on ``/readyz`` until an operator clears it.

A co-signed checkpoint (the peer's note with this node's tlog-cosignature line)
is served at ``GET /xb1/witness/<peer>`` for the peer and for auditors.

The other way round, :meth:`Witness.collect` fetches from each peer
``GET /xb1/witness/<this node>``, the peer's co-signed copy of one of this node's
checkpoints, checks each co-signature with that peer's keys from the trust list, and
adds the good ones to the stored checkpoint. ``GET /xb1/checkpoint`` and evidence
bundles then carry them, so a verifier sees that other states saw the same log.
A co-signed checkpoint that this node never signed is an alarm (``audit-forged``):
someone signed a checkpoint of this node with its key.
"""

from __future__ import annotations

import json
import logging
import time

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import peer_http
from gateway.audit import merkle, note
from gateway.audit.log import open_checkpoint, origin_of
from gateway.errors import GatewayError, PeerError
from gateway.models import AuditCheckpoint, WitnessState
from gateway.node import Node
from schemas.b64 import b64d
from schemas.errors import WireFormatError

log = logging.getLogger(__name__)

MAX_NOTE_BYTES = 64 * 1024


class Witness:
    def __init__(self, node: Node, http: requests.Session | None = None) -> None:
        self.node = node
        self.http = peer_http.session(http)

    def _get(self, url: str) -> bytes:
        # Within one deadline and a size bound: a peer trickling or inflating its answer
        # must not hold the dispatcher, which witnesses between deliveries.
        return peer_http.get(
            self.http, url, timeout=self.node.settings.peer_timeout, max_bytes=MAX_NOTE_BYTES
        )

    def _text(self, url: str) -> str:
        return self._get(url).decode("utf-8", "replace")  # a note is UTF-8 text

    def witness(self, peer: str, now: int | None = None) -> WitnessState | None:
        """Witness one peer's latest checkpoint; returns the stored state (None if the
        peer has no checkpoint yet)."""
        node = self.node
        at = int(time.time()) if now is None else now
        trust_list = node.trust()
        entry = trust_list.node(peer)
        if entry is None:
            raise PeerError("unknown-recipient", f"{peer} is not in the trust list")
        base = entry.endpoint.rstrip("/")
        try:
            text = self._text(f"{base}/xb1/checkpoint")
        except PeerError as e:
            if e.code == "peer-error" and "404" in e.message:
                return None
            raise
        opened = open_checkpoint(text, trust_list, peer, at)
        if opened is None:
            raise note.NoteError(
                "note-unverified",
                f"{peer}'s checkpoint is not signed by any of its keys in the trust list, "
                f"for origin {origin_of(trust_list.federation, peer)!r}",
            )
        body, checkpoint = opened
        with node.sessions() as session:
            state = session.get(WitnessState, peer)
            problem = None
            if state is not None and state.problem is None:
                problem = self._compare(base, state, checkpoint)
            if state is not None and problem is not None:
                state.problem_code, state.problem = problem
                state.checked_at = at
                session.commit()
                log.error("ALARM [%s] %s", problem[0], problem[1])
                return state
            if state is not None and state.problem is not None:
                return state  # frozen until an operator looks into it
            if state is not None and checkpoint.size == state.size:
                state.checked_at = at
                session.commit()
                return state
            line = note.cosign(
                body, origin_of(trust_list.federation, node.id), node.signing_pair(at), at
            )
            cosigned = note.add_signatures(text, [line])
            if state is None:
                state = WitnessState(
                    peer=peer,
                    size=checkpoint.size,
                    root=checkpoint.root,
                    cosigned=cosigned,
                    checked_at=at,
                )
                session.add(state)
            else:
                state.size, state.root = checkpoint.size, checkpoint.root
                state.cosigned, state.checked_at = cosigned, at
            session.commit()
            return state

    def _compare(
        self, base: str, state: WitnessState, checkpoint: note.Checkpoint
    ) -> tuple[str, str] | None:
        if checkpoint.size < state.size:
            return (
                "audit-rollback",
                f"{state.peer}'s log shrank from {state.size} to {checkpoint.size} entries",
            )
        if checkpoint.size == state.size:
            if checkpoint.root != state.root:
                return (
                    "audit-fork",
                    f"{state.peer} signed two different logs of {state.size} entries",
                )
            return None
        answer = self._get(f"{base}/xb1/proofs/consistency?old={state.size}&new={checkpoint.size}")
        try:
            proof = [b64d(h, length=32) for h in json.loads(answer)["proof"]]
        except (ValueError, KeyError, TypeError, RecursionError, WireFormatError):
            return (
                "audit-fork",
                f"{state.peer} sent no valid consistency proof from "
                f"{state.size} to {checkpoint.size}",
            )
        if not merkle.verify_consistency(
            state.size, checkpoint.size, state.root, checkpoint.root, proof
        ):
            return (
                "audit-fork",
                f"{state.peer}'s log of {checkpoint.size} entries does not "
                f"extend the {state.size} entries it signed before: rewritten history",
            )
        return None

    def collect(self, peer: str) -> int:
        """Fetch ``peer``'s co-signature of this node's checkpoint and keep it with the
        checkpoint; returns how many new co-signatures were added (0 or 1)."""
        node = self.node
        trust_list = node.trust()
        entry = trust_list.node(peer)
        if entry is None:
            raise PeerError("unknown-recipient", f"{peer} is not in the trust list")
        try:
            text = self._text(f"{entry.endpoint.rstrip('/')}/xb1/witness/{node.id}")
        except PeerError as e:
            if e.code == "peer-error" and "404" in e.message:
                return 0  # the peer has not witnessed this node yet
            raise
        body, lines = note.signature_lines(text)
        checkpoint = note.parse_checkpoint(body)
        own_origin = origin_of(trust_list.federation, node.id)
        if checkpoint.origin != own_origin:
            raise note.NoteError(
                "note-unverified", f"{peer} served a checkpoint of {checkpoint.origin!r}"
            )
        witness_name = origin_of(trust_list.federation, peer)
        at = int(time.time())
        keys = [
            k.pub for k in trust_list.keys.keys_of(peer) if k.use == "sig" and not k.revoked_by(at)
        ]
        good = []
        for name, line in lines:
            if name != witness_name:
                continue
            for public in keys:
                try:
                    note.verify_cosignature(body, line, name, public)
                except note.NoteError:
                    continue
                good.append(line)
                break
        if not good:
            return 0
        if open_checkpoint(text, trust_list, node.id, at) is None:
            log.warning(
                "%s served a co-signed checkpoint of this node without this node's "
                "valid signature; ignored",
                peer,
            )
            return 0
        with node.sessions() as session:
            row = session.get(AuditCheckpoint, checkpoint.size)
            own_body, own_lines = note.signature_lines(row.note) if row else ("", [])
            if row is None or own_body != body:
                log.error(
                    "ALARM [audit-forged] %s co-signed a checkpoint of this node's log "
                    "(size %d) that this node never signed: its signing key may be in "
                    "other hands",
                    peer,
                    checkpoint.size,
                )
                return 0
            present = {line for _, line in own_lines}
            new = [line for line in good if line not in present]
            if not new:
                return 0
            row.note = note.add_signatures(row.note, new)
            session.commit()
            return len(new)

    def run_once(self, now: int | None = None) -> None:
        """Witness every other member and collect its co-signatures of this node's
        checkpoints; failures to reach one are logged, not raised."""
        trust_list = self.node.trust()
        for peer in trust_list.node_ids:
            if peer == self.node.id:
                continue
            try:
                self.witness(peer, now)
                self.collect(peer)
            except GatewayError as e:
                log.warning("witnessing %s failed: [%s] %s", peer, e.code, e.message)


def alarms(session: Session) -> list[WitnessState]:
    return list(session.scalars(select(WitnessState).where(WitnessState.problem.is_not(None))))
