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
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import peer_http
from gateway.audit import merkle, note
from gateway.audit.log import cosigned, open_checkpoint, origin_of
from gateway.errors import GatewayError, PeerError
from gateway.models import AuditCheckpoint, WitnessState
from gateway.node import Node
from keys.trustlist import NodeEntry, TrustList
from schemas.b64 import b64d
from schemas.errors import WireFormatError

log = logging.getLogger(__name__)

MAX_NOTE_BYTES = 64 * 1024
#: Tries of one witness round when another witness of the same peer moves the state.
WITNESS_ATTEMPTS = 3
#: Refusals that say "not now" (a timeout, a rate limit: deploy/nginx answers 429), not
#: "cannot": a consistency proof refused so is asked for again at the next round.
BUSY = frozenset({408, 425, 429})
#: A peer that signed a larger checkpoint and has proven none consistent with what this
#: node co-signed for this long (down, busy, answering the proof request with 5xx) is an
#: alarm (``audit-unproven``); at least this many witness rounds, at least a day.
UNPROVEN_ROUNDS = 3
UNPROVEN_DAY = 86_400


def unproven_alarm_after(checkpoint_interval: float) -> float:
    """Seconds a peer's checkpoint may stay unproven before it is an alarm."""
    return max(UNPROVEN_DAY, UNPROVEN_ROUNDS * checkpoint_interval)


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
        entry = _member(node, trust_list, peer)
        base = entry.endpoint.rstrip("/")
        # The state is read, the peer's checkpoint fetched after it and compared (a
        # consistency proof fetched over the network, outside any transaction), and the
        # state changed only if it is still what was read: another witness of the same
        # peer (a second dispatcher, `gateway audit witness`) may have moved it
        # meanwhile, and writing an older state over a newer one would let a fork of
        # what was co-signed in between pass unseen. Then all of it again.
        for _ in range(WITNESS_ATTEMPTS):
            with node.sessions() as session:
                state = session.get(WitnessState, peer)
            if state is not None and state.problem is not None:
                return state  # frozen until an operator looks into it
            try:
                text = self._text(f"{base}/xb1/checkpoint")
            except PeerError as e:
                if _status(e) == 404:
                    return None
                raise
            opened = open_checkpoint(text, trust_list, peer, at)
            if opened is None:
                raise note.NoteError(
                    "note-unverified",
                    f"{peer}'s checkpoint is not signed by any of its keys in the trust "
                    f"list, for origin {origin_of(trust_list.federation, peer)!r}",
                )
            body, checkpoint = opened
            try:
                problem = self._compare(base, state, checkpoint) if state is not None else None
            except PeerError:
                # Asked again at the next round; meanwhile it is on record that the peer
                # signed a larger log it has not proven (an alarm if that lasts).
                if state is None or checkpoint.size <= state.size:
                    raise
                if self._note_unproven(state, checkpoint.size, text, at):
                    raise
                # Another witness moved the state meanwhile: what it keeps must agree
                # with what this one was shown, or that is the fork.
                with node.sessions() as session:
                    moved = session.get(WitnessState, peer)
                problem = _conflict(moved, checkpoint) if moved is not None else None
                if problem is None:
                    raise
                state = moved
            values: dict[str, object] = {"checked_at": at}
            if problem is not None:
                values.update(problem_code=problem[0], problem=problem[1])
            elif state is None or checkpoint.size != state.size:
                line = note.cosign(
                    body, origin_of(trust_list.federation, node.id), node.signing_pair(at), at
                )
                values.update(
                    size=checkpoint.size,
                    root=checkpoint.root,
                    cosigned=note.add_signatures(text, [line]),
                )
                if state is not None and state.unproven_size is not None:
                    values.update(
                        unproven_since=None,
                        unproven_size=None,
                        unproven_note=None,
                        unproven_last_note=None,
                    )
            if self._store(peer, state, values):
                if problem is not None:
                    log.error("ALARM [%s] %s", problem[0], problem[1])
                with node.sessions() as session:
                    return session.get(WitnessState, peer)
        log.warning(
            "the witness state of %s changed under each of %d attempts (another witness of "
            "it at the same time); tried again at the next round",
            peer,
            WITNESS_ATTEMPTS,
        )
        with node.sessions() as session:
            return session.get(WitnessState, peer)

    def _store(self, peer: str, seen: WitnessState | None, values: dict[str, object]) -> bool:
        """Write ``values`` into ``peer``'s state if it is still ``seen`` (None: there is
        none yet); whether it was."""
        with self.node.sessions() as session:
            if seen is None:
                session.add(WitnessState(peer=peer, **values))
                try:
                    session.commit()
                except IntegrityError:  # another witness stored a first state meanwhile
                    session.rollback()
                    return False
                return True
            changed = session.execute(
                update(WitnessState)
                .where(*_still(seen))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return False
            session.commit()
            return True

    def _note_unproven(self, seen: WitnessState, size: int, text: str, at: int) -> bool:
        """Note that ``seen.peer`` signed a log of ``size`` entries (``text``) it has not
        proven, if the state is still ``seen`` (whether it was): the first such note and
        the largest (every later log must prove that it extends both, and one of their
        size with another root is a fork; a smaller log than the largest is a rollback),
        and since when. ``size`` is at least the largest kept (``_compare`` saw to it)."""
        values: dict[str, object] = {
            "unproven_size": size,
            "unproven_last_note": text,
            "unproven_note": seen.unproven_note or text,
            "unproven_since": seen.unproven_since or at,
        }
        with self.node.sessions() as session:
            noted = session.execute(
                update(WitnessState)
                .where(*_still(seen))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            session.commit()
        return bool(noted.rowcount == 1)  # type: ignore[attr-defined]

    def _compare(
        self, base: str, state: WitnessState, checkpoint: note.Checkpoint
    ) -> tuple[str, str] | None:
        problem = _conflict(state, checkpoint)
        if problem is not None or checkpoint.size == state.size:
            return problem
        # It must extend what was co-signed, and the logs it signed without proof.
        for size, root in {(state.size, state.root), *_kept(state)}:
            if size < checkpoint.size:
                problem = self._extends(base, state.peer, size, root, checkpoint)
                if problem is not None:
                    return problem
        return None

    def _extends(
        self, base: str, peer: str, size: int, root: bytes, checkpoint: note.Checkpoint
    ) -> tuple[str, str] | None:
        """The problem if ``checkpoint`` does not provably extend the log of ``size``
        entries with ``root`` that ``peer`` signed before; None if it does. Raises
        :class:`PeerError` when the proof could not be had for now."""
        try:
            answer = self._get(f"{base}/xb1/proofs/consistency?old={size}&new={checkpoint.size}")
        except PeerError as e:
            status = _status(e)
            if status is not None and 400 <= status < 500 and status not in BUSY:
                # It signed the larger checkpoint and refuses to prove that it extends
                # the one it signed before: what a forked log would have to do.
                return (
                    "audit-fork",
                    f"{peer} signed a log of {checkpoint.size} entries and refused "
                    f"(HTTP {status}) to prove that it extends the {size} entries it "
                    "signed before",
                )
            raise  # unreachable, or a passing error of its own: tried again next round
        try:
            proof = [b64d(h, length=32) for h in json.loads(answer)["proof"]]
        except (ValueError, KeyError, TypeError, RecursionError, WireFormatError):
            return (
                "audit-fork",
                f"{peer} sent no valid consistency proof from {size} to {checkpoint.size}",
            )
        if not merkle.verify_consistency(size, checkpoint.size, root, checkpoint.root, proof):
            return (
                "audit-fork",
                f"{peer}'s log of {checkpoint.size} entries does not "
                f"extend the {size} entries it signed before: rewritten history",
            )
        return None

    def collect(self, peer: str) -> int:
        """Fetch ``peer``'s co-signature of this node's checkpoint and keep it with the
        checkpoint; returns how many new co-signatures were added (0 or 1)."""
        node = self.node
        trust_list = node.trust()
        entry = _member(node, trust_list, peer)
        try:
            text = self._text(f"{entry.endpoint.rstrip('/')}/xb1/witness/{node.id}")
        except PeerError as e:
            if _status(e) == 404:
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
        good = [
            line
            for name, line in lines
            if name == witness_name and cosigned(body, line, trust_list, peer, at)
        ]
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


def _kept(state: WitnessState) -> set[tuple[int, bytes]]:
    """(size, root) of the first and the largest checkpoint the peer signed without
    proving them (each verified when kept)."""
    kept = set()
    for text in (state.unproven_note, state.unproven_last_note):
        if text is not None:
            body, _ = note.signature_lines(text)
            checkpoint = note.parse_checkpoint(body)
            kept.add((checkpoint.size, checkpoint.root))
    return kept


def _conflict(state: WitnessState, checkpoint: note.Checkpoint) -> tuple[str, str] | None:
    """What ``checkpoint`` contradicts of what ``state``'s peer signed before, with no
    proof needed to see it: a smaller log, or another log of a size already signed."""
    if state.problem is not None:
        return None  # alarmed already
    if checkpoint.size < state.size:
        return (
            "audit-rollback",
            f"{state.peer}'s log shrank from {state.size} to {checkpoint.size} entries",
        )
    if state.unproven_size is not None and checkpoint.size < state.unproven_size:
        return (
            "audit-rollback",
            f"{state.peer} signed a log of {state.unproven_size} entries (kept, unproven) "
            f"and now one of {checkpoint.size}",
        )
    if checkpoint.size == state.size and checkpoint.root != state.root:
        return "audit-fork", f"{state.peer} signed two different logs of {state.size} entries"
    for size, root in _kept(state):
        if checkpoint.size == size and checkpoint.root != root:
            return (
                "audit-fork",
                f"{state.peer} signed two different logs of {size} entries (one kept, unproven)",
            )
    return None


def _still(seen: WitnessState) -> tuple[ColumnElement[bool], ...]:
    """The conditions under which a stored state is still ``seen``, as compared: a
    witness of the same peer at the same time may have moved it or kept a checkpoint."""
    return (
        WitnessState.peer == seen.peer,
        WitnessState.size == seen.size,
        WitnessState.root == seen.root,
        WitnessState.problem.is_(None),
        WitnessState.unproven_note.is_not_distinct_from(seen.unproven_note),
        WitnessState.unproven_last_note.is_not_distinct_from(seen.unproven_last_note),
    )


def _member(node: Node, trust_list: TrustList, peer: str) -> NodeEntry:
    """The trust list's entry of ``peer``, another member than ``node``."""
    if peer == node.id:
        # Its own co-signature would add nothing a verifier could not get from its
        # signature alone, and would read as a witness.
        raise PeerError(
            "own-node", f"{peer} is this node: it witnesses the other members, not itself"
        )
    entry = trust_list.node(peer)
    if entry is None:
        raise PeerError("unknown-recipient", f"{peer} is not in the trust list")
    return entry


def alarms(session: Session) -> list[WitnessState]:
    return list(session.scalars(select(WitnessState).where(WitnessState.problem.is_not(None))))


def unproven(session: Session, now: int, checkpoint_interval: float) -> list[WitnessState]:
    """Peers whose larger signed checkpoint has stayed unproven long enough to be an
    alarm (``audit-unproven``)."""
    since = now - unproven_alarm_after(checkpoint_interval)
    return list(
        session.scalars(
            select(WitnessState).where(
                WitnessState.problem.is_(None), WitnessState.unproven_since <= since
            )
        )
    )


def unproven_message(state: WitnessState, now: int) -> str:
    """The ``audit-unproven`` alarm's sentence."""
    hours = (now - (state.unproven_since or now)) // 3600
    return (
        f"{state.peer} signed a log of {state.unproven_size} entries and for {hours} hours "
        f"has not proven that it extends the {state.size} entries this node co-signed "
        "(its proof request unanswered, busy or failing): ask its operators; a rewritten "
        "log cannot be proven"
    )


def _status(error: PeerError) -> int | None:
    """The HTTP status a peer answered with, when that is what ``error`` says."""
    status = error.details.get("status") if isinstance(error.details, dict) else None
    return status if isinstance(status, int) else None
