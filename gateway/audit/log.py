"""The node's append-only audit log (PROTOCOL §6): entries, signed checkpoints, proofs.

* :func:`record` appends one entry **inside the caller's transaction**, so an action
  and its audit entry commit together or not at all. Entries are xb1-json of
  metadata and hashes (who, what, when, ids, SHA-256 of envelopes), never message
  contents, so purging a payload never breaks the log.
* Positions are dense and follow commit order: the next ``seq`` is taken as
  ``MAX(seq) + 1`` in the same statement that inserts it, under SQLite's single
  writer lock, or under a transaction-scoped advisory lock on PostgreSQL. No gap can
  appear, and a checkpoint of size n covers exactly entries 1..n.
* :func:`checkpoint` folds new entries into the compact range stored with the last
  checkpoint and signs a C2SP checkpoint with the node's current signing key; its
  origin, which is also the key name, is ``xb1-audit/<federation>/<node>``. In the
  same transaction it stores the hash of every perfect, aligned subtree of
  2**SUBTREE_LEVEL entries and above that the new entries complete
  (``audit_subtrees``); a log from before that table is filled at its next
  checkpoint.
* :func:`inclusion` and :func:`consistency` read the O(log n) stored subtree hashes
  a proof needs and fold the rest from leaf hashes: at most a few blocks of
  2**SUBTREE_LEVEL entries plus the entries since the last checkpoint.
* :func:`verify` re-reads the whole log, every stored subtree hash and every
  checkpoint, streaming, and names the first entry, subtree or range that no longer
  matches.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_right
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, text, tuple_
from sqlalchemy.engine import Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.audit import merkle, note
from gateway.db import DriverStatement
from gateway.errors import ApiError, NodeStateError
from gateway.models import AuditCheckpoint, AuditEntry, AuditSubtree
from keys.trustlist import TrustList
from schemas import xb1json
from schemas.b64 import b64e

ADVISORY_LOCK_KEY = 0x78623161  # "xb1a"
_APPEND = {
    # For a writer that alone may append: under SQLite's single writer lock, or on
    # PostgreSQL once this transaction holds the advisory lock.
    "plain": text(
        "INSERT INTO audit_entries (seq, at, kind, entry, leaf_hash) "
        "SELECT COALESCE(MAX(seq), 0) + 1, :at, :kind, :entry, :leaf FROM audit_entries"
    ),
    # PostgreSQL, one round trip: take the transaction-scoped lock, then append. The
    # statement's snapshot predates the lock, so when another append committed while
    # this one waited for the lock, MAX(seq) is stale and seq MAX + 1 exists: nothing
    # is inserted, and record() appends again under the lock it now holds.
    "postgresql": text(
        "WITH xb1_audit_lock AS (SELECT pg_advisory_xact_lock(:lock_key)) "
        "INSERT INTO audit_entries (seq, at, kind, entry, leaf_hash) "
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM audit_entries) + 1, :at, :kind, :entry, :leaf "
        "FROM xb1_audit_lock ON CONFLICT (seq) DO NOTHING RETURNING seq"
    ),
}

_DRIVER_APPEND = {name: DriverStatement(statement) for name, statement in _APPEND.items()}


def record(session: Session | Any, kind: str, *, at: int | None = None, **fields: Any) -> None:
    """Append one entry in the caller's transaction (committed with it).

    ``session`` is an ORM Session or a Core ``Connection`` (the receive path runs on
    one, without a unit of work)."""
    when = int(time.time()) if at is None else at
    entry = xb1json.dumps({"kind": kind, "at": when, **fields})
    values = {"at": when, "kind": kind, "entry": entry, "leaf": merkle.leaf_hash(entry)}
    if isinstance(session, Session):
        if session.get_bind().dialect.name != "postgresql":
            session.execute(_APPEND["plain"], values)
        elif session.execute(_APPEND["postgresql"], _locked(values)).first() is None:
            # It waited for the lock behind another append, which has committed since:
            # append again, in a statement whose snapshot sees that entry.
            session.execute(_APPEND["plain"], values)
        return
    # A Core connection in a begun transaction: the receive path, on the driver's cursor.
    if session.dialect.name != "postgresql":
        _DRIVER_APPEND["plain"].first(session, values)
    elif _DRIVER_APPEND["postgresql"].first(session, _locked(values)) is None:
        _DRIVER_APPEND["plain"].first(session, values)


_LOCK = text("SELECT pg_advisory_xact_lock(:lock_key)")
_DRIVER_LOCK = DriverStatement(_LOCK)


def lock(session: Session | Any) -> None:
    """Take the audit log's append lock now, before changing rows (PostgreSQL; on
    SQLite one writer holds the database anyway). The receive path takes it before it
    inserts and changes rows (a correction changes its original); a transaction that
    changed a row first and then waited to append could deadlock with it.

    ``session`` is an ORM Session or a Core ``Connection`` in a begun transaction."""
    if isinstance(session, Session):
        if session.get_bind().dialect.name == "postgresql":
            session.execute(_LOCK, _locked({}))
    elif session.dialect.name == "postgresql":
        _DRIVER_LOCK.first(session, _locked({}))


def _locked(values: dict[str, Any]) -> dict[str, Any]:
    return {**values, "lock_key": ADVISORY_LOCK_KEY}


def origin_of(federation: str, node_id: str) -> str:
    return f"xb1-audit/{federation}/{node_id}"


def open_checkpoint(
    text: str, trust_list: TrustList, node_id: str, now: int | None
) -> tuple[str, note.Checkpoint] | None:
    """``node_id``'s signed checkpoint, verified with any of that node's signing keys
    in the trust list (keys rotate) and for that node's origin: its body and parsed
    form, or None if no listed key verifies it. A checkpoint carries no time, so a
    key revoked by ``now`` vouches for none (§5); ``now`` None admits such keys too,
    for checking this node's own stored history against what it signed."""
    origin = origin_of(trust_list.federation, node_id)
    for key in trust_list.keys.keys_of(node_id):
        if key.use != "sig" or (now is not None and key.revoked_by(now)):
            continue
        try:
            body, _ = note.open_note(text, {origin: key.pub})
            checkpoint = note.parse_checkpoint(body)
        except note.NoteError:
            continue
        return (body, checkpoint) if checkpoint.origin == origin else None
    return None


def cosigned(body: str, line: str, trust_list: TrustList, member: str, now: int) -> bool:
    """Whether ``line`` is ``member``'s co-signature of the checkpoint ``body``, by one
    of its signing keys usable at the time the co-signature states, judged at ``now``
    (K1 of §5, as for a message's ``iat``: a retired key only inside its window, a
    revoked one for nothing from its revocation on)."""
    name = origin_of(trust_list.federation, member)
    for key in trust_list.keys.keys_of(member):
        if key.use != "sig" or key.revoked_by(now):
            continue
        try:
            stated = note.verify_cosignature(body, line, name, key.pub)
        except note.NoteError:
            continue
        if key.usable(stated, now):
            return True
    return False


SUBTREE_LEVEL = 8
"""Checkpoints store every perfect subtree of 2**8 = 256 entries and above (about one
row per 128 entries), so a proof reads O(log n) stored hashes plus the leaf hashes of
at most a few 256-entry blocks and of the entries since the last checkpoint."""
STREAM_ROWS = 10_000  # rows per fetch when streaming entries


def stream(session: Session, statement: Any) -> Result[*tuple[Any, ...]]:
    """Run ``statement`` on the session's connection, ``STREAM_ROWS`` rows per fetch
    (a server-side cursor on PostgreSQL), for reads that may cover the whole log."""
    return session.connection().execute(statement, execution_options={"yield_per": STREAM_ROWS})


def _frontier_bytes(frontier: merkle.CompactRange) -> bytes:
    return b"".join(frontier.hashes)


def _frontier_from(size: int, raw: bytes) -> merkle.CompactRange:
    return merkle.CompactRange.from_state(size, [raw[i : i + 32] for i in range(0, len(raw), 32)])


def latest(session: Session) -> AuditCheckpoint | None:
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1)
    ).first()


def size(session: Session) -> int:
    return int(session.scalar(select(func.coalesce(func.max(AuditEntry.seq), 0))) or 0)


def checkpoint(node: Any, *, now: int | None = None, min_new: int = 1) -> AuditCheckpoint | None:
    """Sign a checkpoint over every entry so far, if at least ``min_new`` are new, and
    store the hash of every perfect subtree of ``SUBTREE_LEVEL`` and above that the new
    entries complete, in the same transaction."""
    at = int(time.time()) if now is None else now
    with node.sessions() as session:
        last = latest(session)
        if last is not None and _frontier_problem(last, _stated(last.note)):
            raise NodeStateError(
                "audit-mismatch",
                f"the stored state of the checkpoint at size {last.size} does not give the "
                "root it signed: the audit tables were changed; run 'gateway audit verify' "
                "and restore the database from a backup",
            )
        frontier = _frontier_from(last.size, last.frontier) if last else merkle.CompactRange()
        covered = _covered(session)
        subtrees, covered = _catch_up(session, frontier, covered) if last else ([], covered)
        target = size(session)
        if target - frontier.size < max(min_new, 1):
            return _commit(session, subtrees, None)
        # Rows already stored are skipped (the table can be ahead of the checkpoints).
        keep = _keeper(subtrees, max(covered, frontier.size >> SUBTREE_LEVEL << SUBTREE_LEVEL))
        with closing(_leaves(session, frontier.size + 1, target)) as leaves:
            for seq, leaf in leaves:
                if seq != frontier.size + 1:
                    raise NodeStateError("audit-gap", f"audit entry {frontier.size + 1} is missing")
                frontier.append(leaf, keep)
        if frontier.size != target:
            raise NodeStateError("audit-gap", f"audit entry {frontier.size + 1} is missing")
        trust_list = node.trust()
        origin = origin_of(trust_list.federation, node.id)
        body = note.checkpoint_body(origin, frontier.size, frontier.root())
        signed = note.sign_note(body, origin, node.signing_pair(at))
        row = AuditCheckpoint(
            size=frontier.size,
            root=frontier.root(),
            note=signed,
            frontier=_frontier_bytes(frontier),
            at=at,
        )
        session.add(row)
        return _commit(session, subtrees, row)


def _commit(
    session: Session, subtrees: list[dict[str, Any]], row: AuditCheckpoint | None
) -> AuditCheckpoint | None:
    if subtrees:
        session.execute(insert(AuditSubtree), subtrees)
    if row is None and not subtrees:
        return None
    try:
        session.commit()
    except IntegrityError:  # another process signed the same size (or stored them) first
        session.rollback()
        return None
    return row


def _keeper(subtrees: list[dict[str, Any]], covered: int) -> Any:
    """A ``CompactRange.append`` callback adding the rows to store past ``covered``."""

    def keep(level: int, index: int, h: bytes) -> None:
        if level >= SUBTREE_LEVEL and (index + 1) << level > covered:
            subtrees.append({"level": level, "idx": index, "hash": h})

    return keep


def _leaves(session: Session, first: int, last: int) -> Result[int, bytes]:
    """``(seq, leaf_hash)`` of entries ``first..last`` in order; streamed when there are
    many (a server-side cursor costs PostgreSQL round trips a short read does not need)."""
    statement = (
        select(AuditEntry.seq, AuditEntry.leaf_hash)
        .where(AuditEntry.seq >= first, AuditEntry.seq <= last)
        .order_by(AuditEntry.seq)
    )
    if last - first >= STREAM_ROWS:
        statement = statement.execution_options(yield_per=STREAM_ROWS)
    return session.execute(statement)


def _catch_up(
    session: Session, frontier: merkle.CompactRange, covered: int
) -> tuple[list[dict[str, Any]], int]:
    """The subtree rows missing below the last checkpoint (``frontier``): all of them on a
    log from before they were stored, none otherwise; and how far the stored rows then
    reach. The entries are folded again from the end of the stored subtrees and must
    give the checkpoint's frontier.

    The rows are derived from the entries, so if some below that end are gone, all are
    deleted and rebuilt from entry 1 rather than stopping checkpoints.
    """
    if covered >> SUBTREE_LEVEL >= frontier.size >> SUBTREE_LEVEL:
        return [], covered
    pieces = merkle.perfect_subtrees(0, covered)
    stored = _stored_hashes(session, pieces)
    if len(stored) != len(pieces):
        session.execute(delete(AuditSubtree))
        covered, pieces = 0, []
    redone = merkle.CompactRange.from_state(covered, [stored[p] for p in pieces])
    subtrees: list[dict[str, Any]] = []
    keep = _keeper(subtrees, covered)
    with closing(_leaves(session, covered + 1, frontier.size)) as leaves:
        for seq, leaf in leaves:
            if seq != redone.size + 1:
                raise NodeStateError("audit-gap", f"audit entry {redone.size + 1} is missing")
            redone.append(leaf, keep)
    if redone.size != frontier.size or redone.hashes != frontier.hashes:
        raise NodeStateError(
            "audit-mismatch",
            f"audit entries 1..{frontier.size} no longer match the checkpoint of that size; "
            "run 'gateway audit verify'",
        )
    return subtrees, covered


def _covered(session: Session) -> int:
    """How many entries the stored subtrees cover: a multiple of 2**SUBTREE_LEVEL."""
    top = session.scalar(
        select(func.max(AuditSubtree.idx)).where(AuditSubtree.level == SUBTREE_LEVEL)
    )
    return 0 if top is None else (int(top) + 1) << SUBTREE_LEVEL


def _stored_hashes(
    session: Session, keys: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.execute(
        select(AuditSubtree.level, AuditSubtree.idx, AuditSubtree.hash).where(
            tuple_(AuditSubtree.level, AuditSubtree.idx).in_(wanted)
        )
    )
    return {(level, idx): h for level, idx, h in rows}


class _StoredTree:
    """The log's tree nodes for one proof, as a :data:`merkle.SubtreeLookup`.

    One statement reads the log's size and how far the stored subtrees reach.
    :meth:`fetch` plans the perfect subtrees a proof needs: those inside the stored
    subtrees are read in one statement; smaller ones, and those past the stored
    subtrees (entries since the last checkpoint), are folded from their leaf hashes,
    read in one more statement; those that straddle the end of the stored subtrees are
    left to :func:`merkle.subtree_hash` to compute from their halves. A subtree still
    missing after that (a stored row that is gone) is folded from its leaves on demand.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        log_size = select(func.coalesce(func.max(AuditEntry.seq), 0)).scalar_subquery()
        top = (
            select(func.max(AuditSubtree.idx))
            .where(AuditSubtree.level == SUBTREE_LEVEL)
            .scalar_subquery()
        )
        entries, stored_top = session.execute(select(log_size, top)).one()
        self.size = int(entries)
        self._covered = 0 if stored_top is None else (int(stored_top) + 1) << SUBTREE_LEVEL
        self._known: dict[tuple[int, int], bytes] = {}
        self._halved: set[tuple[int, int]] = set()  # computed from their two halves

    def fetch(self, ranges: Iterable[tuple[int, int]]) -> None:
        stored: list[tuple[int, int]] = []
        folded: list[tuple[int, int]] = []
        for start, end in ranges:
            for level, index in merkle.perfect_subtrees(start, end):
                self._plan(level, index, stored, folded)
        self._known.update(_stored_hashes(self._session, stored))
        self._fold(folded)

    def _plan(
        self, level: int, index: int, stored: list[tuple[int, int]], folded: list[tuple[int, int]]
    ) -> None:
        start, end = index << level, (index + 1) << level
        if level >= SUBTREE_LEVEL and end <= self._covered:
            stored.append((level, index))
        elif level < SUBTREE_LEVEL or start >= self._covered:
            folded.append((level, index))
        else:  # straddles the end of the stored subtrees
            self._halved.add((level, index))
            self._plan(level - 1, 2 * index, stored, folded)
            self._plan(level - 1, 2 * index + 1, stored, folded)

    def _fold(self, subtrees: Iterable[tuple[int, int]]) -> None:
        wanted = set(subtrees)
        spans = sorted((index << level, (index + 1) << level) for level, index in wanted)
        runs: list[list[int]] = []
        for start, end in spans:  # aligned subtrees nest or are disjoint
            if runs and start <= runs[-1][1]:
                runs[-1][1] = max(runs[-1][1], end)
            else:
                runs.append([start, end])
        if not runs:
            return
        starts = [start for start, _ in runs]
        statement = (
            select(AuditEntry.seq, AuditEntry.leaf_hash)
            .where(or_(*(AuditEntry.seq.between(start + 1, end) for start, end in runs)))
            .order_by(AuditEntry.seq)
        )
        if sum(end - start for start, end in runs) > STREAM_ROWS:
            statement = statement.execution_options(yield_per=STREAM_ROWS)
        read = {start: start for start in starts}
        with closing(self._session.execute(statement)) as rows:
            # Leaf index seq - 1 belongs to the last run starting at or before it.
            by_run = groupby(rows, key=lambda row: starts[bisect_right(starts, row[0] - 1) - 1])
            for start, group in by_run:
                for level, index, h in merkle.aligned_subtrees(start, (r[1] for r in group)):
                    read[start] += level == 0
                    if (level, index) in wanted:
                        self._known[(level, index)] = h
        for start, end in runs:
            if read[start] != end:
                raise NodeStateError("audit-gap", f"audit entries {start + 1}..{end} are missing")

    def __call__(self, level: int, index: int) -> bytes | None:
        key = (level, index)
        if key in self._halved:
            return None
        if key not in self._known:
            self._fold([key])
        return self._known[key]


def inclusion(session: Session, index: int, tree_size: int) -> dict[str, Any]:
    """Proof that entry ``index`` (1-based) is in the tree of ``tree_size`` entries."""
    tree = _StoredTree(session)
    if not 1 <= index <= tree_size <= tree.size:
        raise ApiError("bad-proof-request", "need 1 <= index <= size <= the log's size", status=422)
    ranges = merkle.inclusion_ranges(index - 1, tree_size)
    tree.fetch([*ranges, (index - 1, index), (0, tree_size)])
    return {
        "index": index,
        "size": tree_size,
        "leaf_hash": b64e(merkle.subtree_hash(0, index - 1, tree)),
        "root": b64e(merkle.range_root(0, tree_size, tree)),
        "proof": [b64e(merkle.range_root(a, b, tree)) for a, b in ranges],
    }


def consistency(session: Session, old_size: int, new_size: int) -> dict[str, Any]:
    """Proof that the tree of ``old_size`` entries is a prefix of that of ``new_size``."""
    tree = _StoredTree(session)
    if not 1 <= old_size <= new_size <= tree.size:
        raise ApiError("bad-proof-request", "need 1 <= old <= new <= the log's size", status=422)
    ranges = merkle.consistency_ranges(old_size, new_size)
    tree.fetch([*ranges, (0, old_size), (0, new_size)])
    return {
        "old": old_size,
        "new": new_size,
        "old_root": b64e(merkle.range_root(0, old_size, tree)),
        "new_root": b64e(merkle.range_root(0, new_size, tree)),
        "proof": [b64e(merkle.range_root(a, b, tree)) for a, b in ranges],
    }


@dataclass(frozen=True)
class Finding:
    ok: bool
    entries: int
    checkpoints: int
    problem: str | None = None


def verify(session: Session, trust_list: TrustList, node_id: str) -> Finding:
    """Check every entry against its stored leaf hash and position, every stored subtree
    hash against the entries, and every checkpoint's root and signature; name the first
    thing that does not hold. Entries and subtrees are streamed: memory stays constant."""
    frontier = merkle.CompactRange()
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
    subtrees = _SubtreeCheck(session)
    # yield_per as an execution option, so PostgreSQL streams from a server-side cursor
    # instead of sending every row before the first is read.
    entries = session.scalars(
        select(AuditEntry).order_by(AuditEntry.seq).execution_options(yield_per=1000)
    )
    try:
        return _verify_entries(entries, frontier, subtrees, checkpoints, trust_list, node_id)
    finally:  # a streamed result left open would hold a server-side cursor
        entries.close()
        subtrees.close()


def _verify_entries(
    entries: Iterable[AuditEntry],
    frontier: merkle.CompactRange,
    subtrees: _SubtreeCheck,
    checkpoints: list[AuditCheckpoint],
    trust_list: TrustList,
    node_id: str,
) -> Finding:
    pending = iter(checkpoints)
    target = next(pending, None)
    good_upto = 0
    count = 0
    for row in entries:
        count += 1
        if row.seq != frontier.size + 1:
            return Finding(
                False,
                count,
                0,
                f"entry {frontier.size + 1} is missing (the next stored entry is {row.seq})",
            )
        if merkle.leaf_hash(row.entry) != row.leaf_hash:
            return Finding(
                False,
                count,
                0,
                f"entry {row.seq} was changed: its contents do not match its leaf hash",
            )
        if (row.kind, row.at) != _indexed(row.entry):
            # The oversight report selects entries by these columns.
            return Finding(
                False,
                count,
                0,
                f"entry {row.seq} was changed: its kind and at columns do not match its contents",
            )
        frontier.append(row.leaf_hash, subtrees.completed)
        if subtrees.problem:
            return Finding(False, count, 0, subtrees.problem)
        while target is not None and target.size == frontier.size:
            problem = _check_checkpoint(target, frontier, trust_list, node_id, good_upto)
            if problem:
                return Finding(False, count, 0, problem)
            good_upto = target.size
            target = next(pending, None)
    if target is not None:
        return Finding(
            False,
            count,
            0,
            f"checkpoint at size {target.size} is beyond the "
            f"log's {frontier.size} entries: entries were deleted",
        )
    problem = subtrees.beyond(frontier.size)
    if problem:
        return Finding(False, count, 0, problem)
    return Finding(True, count, len(checkpoints))


class _SubtreeCheck:
    """Compares the stored subtree hashes, streamed in the order a fold of the entries
    completes them (by last entry, then level), with the hashes the fold computes."""

    def __init__(self, session: Session) -> None:
        last_entry = (AuditSubtree.idx + 1).op("<<")(AuditSubtree.level)
        self._result = session.execute(
            select(AuditSubtree.level, AuditSubtree.idx, AuditSubtree.hash)
            .order_by(last_entry, AuditSubtree.level)
            .execution_options(yield_per=1000)
        )
        self._rows = iter(self._result)
        self._next = next(self._rows, None)
        self.problem: str | None = None

    def completed(self, level: int, index: int, h: bytes) -> None:
        if level < SUBTREE_LEVEL or self._next is None or self.problem:
            return  # not stored (yet): the entries since the last checkpoint
        stored_level, stored_index, stored_hash = self._next
        if (stored_level, stored_index) == (level, index):
            if stored_hash != h:
                self.problem = (
                    f"stored subtree hash at level {level}, index {index} does not match "
                    f"entries {_span(level, index)}: the subtree row was changed"
                )
            self._next = next(self._rows, None)
        elif _order(stored_level, stored_index) < _order(level, index):
            self.problem = (
                f"stored subtree hash at level {stored_level}, index {stored_index} "
                "is no subtree of the log: the subtree row was added or changed"
            )
        else:
            self.problem = (
                f"stored subtree hash at level {level}, index {index} (entries "
                f"{_span(level, index)}) is missing: the subtree row was deleted"
            )

    def close(self) -> None:
        self._result.close()

    def beyond(self, entries: int) -> str | None:
        if self._next is None:
            return None
        level, index, _ = self._next
        return (
            f"stored subtree hash at level {level}, index {index} covers entries "
            f"{_span(level, index)}, beyond the log's {entries} entries"
        )


def _order(level: int, index: int) -> tuple[int, int]:
    return ((index + 1) << level, level)


def _span(level: int, index: int) -> str:
    return f"{(index << level) + 1}..{(index + 1) << level}"


def _indexed(entry: bytes) -> tuple[Any, Any]:
    """The kind and time an entry states (None, None for bytes that are no entry)."""
    try:
        parsed = json.loads(entry)
    except (ValueError, RecursionError):
        return None, None
    return (parsed.get("kind"), parsed.get("at")) if isinstance(parsed, dict) else (None, None)


def _check_checkpoint(
    row: AuditCheckpoint,
    frontier: merkle.CompactRange,
    trust_list: TrustList,
    node_id: str,
    good_upto: int,
) -> str | None:
    """The checkpoint must be signed by one of the node's signing keys and state exactly
    the root of the entries before it, as must the frontier stored to continue from.
    (Entries up to ``good_upto`` were proved by the checkpoint before.)"""
    opened = open_checkpoint(row.note, trust_list, node_id, None)
    if opened is None:  # nothing says then that the entries it covers differ
        return (
            f"the checkpoint at size {row.size} is not signed by any signing key the trust "
            f"list lists for {node_id}: the checkpoint was changed, or it was signed with a "
            "key the trust list does not list for this node (compare 'gateway keys show' "
            "with 'gateway trust show')"
        )
    parsed = opened[1]
    problem: str | None
    if parsed.size != row.size or parsed.root != frontier.root() or row.root != parsed.root:
        problem = f"checkpoint at size {row.size} does not match the entries"
    else:
        problem = _frontier_problem(row, parsed)
    if problem is None:
        return None
    return f"{problem}: an entry in {good_upto + 1}..{row.size} was changed, deleted or reordered"


def _stated(text: str) -> note.Checkpoint | None:
    """What a stored checkpoint's note states (its signatures are verify's matter, and
    the key that signed it may have left the trust list since)."""
    try:
        return note.parse_checkpoint(note.signature_lines(text)[0])
    except note.NoteError:
        return None


def _frontier_problem(row: AuditCheckpoint, stated: note.Checkpoint | None) -> str | None:
    """The next checkpoint continues from ``row.frontier``, which no signature covers:
    it must give the size and root that ``row``'s note states."""
    try:
        frontier = _frontier_from(row.size, row.frontier)
        given = (frontier.size, frontier.root())
    except ValueError:  # not as many hashes as the size needs
        given = None
    if stated is None or given != (stated.size, stated.root):
        return f"checkpoint at size {row.size}: its stored frontier does not give its signed root"
    return None
