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
  origin, which is also the key name, is ``xb1-audit/<federation>/<node>``.
* :func:`verify` re-reads the whole log and every checkpoint and names the first
  entry or range that no longer matches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.audit import merkle, note
from gateway.errors import ApiError, NodeStateError
from gateway.models import AuditCheckpoint, AuditEntry
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


def record(session: Session | Any, kind: str, *, at: int | None = None, **fields: Any) -> None:
    """Append one entry in the caller's transaction (committed with it).

    ``session`` is an ORM Session or a Core ``Connection`` (the receive path runs on
    one, without a unit of work)."""
    when = int(time.time()) if at is None else at
    entry = xb1json.dumps({"kind": kind, "at": when, **fields})
    dialect = session.get_bind().dialect if isinstance(session, Session) else session.dialect
    values = {"at": when, "kind": kind, "entry": entry, "leaf": merkle.leaf_hash(entry)}
    if dialect.name != "postgresql":
        session.execute(_APPEND["plain"], values)
        return
    appended = session.execute(_APPEND["postgresql"], {**values, "lock_key": ADVISORY_LOCK_KEY})
    if appended.first() is None:
        # It waited for the lock behind another append, which has committed since:
        # append again, in a statement whose snapshot sees that entry.
        session.execute(_APPEND["plain"], values)


def origin_of(federation: str, node_id: str) -> str:
    return f"xb1-audit/{federation}/{node_id}"


def open_checkpoint(
    text: str, trust_list: TrustList, node_id: str
) -> tuple[str, note.Checkpoint] | None:
    """``node_id``'s signed checkpoint, verified with any of that node's signing keys
    in the trust list (keys rotate) and for that node's origin: its body and parsed
    form, or None if no listed key verifies it."""
    origin = origin_of(trust_list.federation, node_id)
    for key in trust_list.keys.keys_of(node_id):
        if key.use != "sig":
            continue
        try:
            body, _ = note.open_note(text, {origin: key.pub})
            checkpoint = note.parse_checkpoint(body)
        except note.NoteError:
            continue
        return (body, checkpoint) if checkpoint.origin == origin else None
    return None


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
    """Sign a checkpoint over every entry so far, if at least ``min_new`` are new."""
    at = int(time.time()) if now is None else now
    with node.sessions() as session:
        last = latest(session)
        frontier = _frontier_from(last.size, last.frontier) if last else merkle.CompactRange()
        rows = session.execute(
            select(AuditEntry.seq, AuditEntry.leaf_hash)
            .where(AuditEntry.seq > frontier.size)
            .order_by(AuditEntry.seq)
        ).all()
        if len(rows) < min_new or not rows:
            return None
        for seq, leaf in rows:
            if seq != frontier.size + 1:
                raise NodeStateError("audit-gap", f"audit entry {frontier.size + 1} is missing")
            frontier.append(leaf)
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
        try:
            session.commit()
        except IntegrityError:  # another process signed the same size first
            session.rollback()
            return None
        return row


def _leaf_hashes(session: Session, upto: int) -> list[bytes]:
    return list(
        session.scalars(
            select(AuditEntry.leaf_hash).where(AuditEntry.seq <= upto).order_by(AuditEntry.seq)
        )
    )


def inclusion(session: Session, index: int, tree_size: int) -> dict[str, Any]:
    """Proof that entry ``index`` (1-based) is in the tree of ``tree_size`` entries."""
    if not 1 <= index <= tree_size <= size(session):
        raise ApiError("bad-proof-request", "need 1 <= index <= size <= the log's size", status=422)
    leaves = _leaf_hashes(session, tree_size)
    return {
        "index": index,
        "size": tree_size,
        "leaf_hash": b64e(leaves[index - 1]),
        "root": b64e(merkle.root(leaves)),
        "proof": [b64e(h) for h in merkle.inclusion_proof(leaves, index - 1)],
    }


def consistency(session: Session, old_size: int, new_size: int) -> dict[str, Any]:
    """Proof that the tree of ``old_size`` entries is a prefix of that of ``new_size``."""
    if not 1 <= old_size <= new_size <= size(session):
        raise ApiError("bad-proof-request", "need 1 <= old <= new <= the log's size", status=422)
    leaves = _leaf_hashes(session, new_size)
    return {
        "old": old_size,
        "new": new_size,
        "old_root": b64e(merkle.root(leaves[:old_size])),
        "new_root": b64e(merkle.root(leaves)),
        "proof": [b64e(h) for h in merkle.consistency_proof(leaves, old_size)],
    }


@dataclass(frozen=True)
class Finding:
    ok: bool
    entries: int
    checkpoints: int
    problem: str | None = None


def verify(session: Session, trust_list: TrustList, node_id: str) -> Finding:
    """Check every entry against its stored leaf hash and position, and every
    checkpoint's root and signature; name the first thing that does not hold."""
    frontier = merkle.CompactRange()
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.size)))
    pending = iter(checkpoints)
    target = next(pending, None)
    good_upto = 0
    count = 0
    for row in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
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
        frontier.append(row.leaf_hash)
        while target is not None and target.size == frontier.size:
            problem = _check_checkpoint(target, frontier, trust_list, node_id)
            if problem:
                return Finding(
                    False,
                    count,
                    0,
                    f"{problem}: an entry in {good_upto + 1}.."
                    f"{target.size} was changed, deleted or reordered",
                )
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
    return Finding(True, count, len(checkpoints))


def _check_checkpoint(
    row: AuditCheckpoint, frontier: merkle.CompactRange, trust_list: TrustList, node_id: str
) -> str | None:
    """The checkpoint must be signed by one of the node's signing keys and state exactly
    the root of the entries before it."""
    opened = open_checkpoint(row.note, trust_list, node_id)
    if opened is None:
        return f"checkpoint at size {row.size} is not signed by this node's keys"
    parsed = opened[1]
    if parsed.size != row.size or parsed.root != frontier.root() or row.root != parsed.root:
        return f"checkpoint at size {row.size} does not match the entries"
    return None
