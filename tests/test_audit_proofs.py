"""Proofs from stored subtree hashes give exactly the reference proofs.

The pure functions of ``merkle`` (proof ranges, perfect subtrees, folding a run of
leaves) are compared with the reference builders, which take every leaf hash, for
every size up to 64 and for random sizes, stored levels and coverage. On SQLite and
PostgreSQL, the log's proofs are compared with the reference at random indices and
sizes, with entries before and after the last checkpoint, on a log migrated to
0010 with entries already in it, and without the leaf hashes a proof has no
business reading (a proof takes three statements and a bounded number of leaves).
``verify`` must name a changed, deleted or added subtree row.
"""

from __future__ import annotations

import random

import pytest
from alembic import command
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, func, insert, inspect, select, update

from gateway import db
from gateway.audit import log, merkle
from gateway.audit.merkle import (
    aligned_subtrees,
    consistency_proof,
    consistency_proof_from,
    consistency_ranges,
    inclusion_proof,
    inclusion_proof_from,
    inclusion_ranges,
    leaf_hash,
    perfect_subtrees,
    range_root,
    root,
    subtree_hash,
)
from gateway.errors import ApiError, NodeStateError
from gateway.models import AuditCheckpoint, AuditEntry, AuditSubtree
from schemas.b64 import b64d

HASHES = [leaf_hash(b"entry-%d" % i) for i in range(5000)]


def leaves_only(hashes):
    return lambda level, index: hashes[index] if level == 0 else None


def stored_above(hashes, min_level, covered):
    """A lookup holding the leaves and the subtrees a checkpoint at ``covered`` stores."""
    known = {
        (level, index): h
        for level, index, h in aligned_subtrees(0, hashes[:covered])
        if level >= min_level
    }

    def lookup(level, index):
        return hashes[index] if level == 0 else known.get((level, index))

    return lookup


# -- pure functions -------------------------------------------------------------


@pytest.mark.parametrize("size", range(1, 65))
def test_every_proof_from_leaves_equals_the_reference(size):
    tree = HASHES[:size]
    lookup = leaves_only(tree)
    assert range_root(0, size, lookup) == root(tree)
    for index in range(size):
        assert inclusion_proof_from(index, size, lookup) == inclusion_proof(tree, index)
    for old in range(size + 1):
        assert consistency_proof_from(old, size, lookup) == consistency_proof(tree, old)


def test_proof_ranges_are_the_nodes_hashed_into_the_reference_proof():
    tree = HASHES[:37]
    for index in range(37):
        ranges = inclusion_ranges(index, 37)
        assert [root(tree[a:b]) for a, b in ranges] == inclusion_proof(tree, index)
    for old in range(38):
        ranges = consistency_ranges(old, 37)
        assert [root(tree[a:b]) for a, b in ranges] == consistency_proof(tree, old)
    with pytest.raises(ValueError):
        inclusion_ranges(37, 37)
    with pytest.raises(ValueError):
        consistency_ranges(38, 37)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, len(HASHES)), st.integers(1, 9), st.integers(0, len(HASHES)), st.data())
def test_random_proofs_from_stored_subtrees_equal_the_reference(size, min_level, covered, data):
    tree = HASHES[:size]
    lookup = stored_above(tree, min_level, min(covered, size))
    assert range_root(0, size, lookup) == root(tree)
    index = data.draw(st.integers(0, size - 1))
    assert inclusion_proof_from(index, size, lookup) == inclusion_proof(tree, index)
    old = data.draw(st.integers(0, size))
    assert consistency_proof_from(old, size, lookup) == consistency_proof(tree, old)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300))
def test_aligned_subtrees_are_exactly_the_perfect_subtrees_inside_the_run(first, count):
    found = list(aligned_subtrees(first, HASHES[first : first + count]))
    expected = {
        (level, index)
        for level in range(10)
        for index in range(first >> level, (first + count) >> level)
        if index << level >= first and (index + 1) << level <= first + count
    }
    assert {(level, index) for level, index, _ in found} == expected
    assert len(found) == len(expected)
    for level, index, h in found:
        assert h == root(HASHES[index << level : (index + 1) << level])
    ends = [((index + 1) << level, level) for level, index, _ in found]
    assert ends == sorted(ends)  # in the order their last leaf is read


def test_compact_range_reports_each_completed_subtree():
    completed = []
    compact = merkle.CompactRange()
    for h in HASHES[:300]:
        compact.append(h, lambda level, index, h: completed.append((level, index, h)))
    assert completed == [s for s in aligned_subtrees(0, HASHES[:300]) if s[0] >= 1]


def test_ranges_that_are_no_tree_node_are_refused():
    assert perfect_subtrees(8, 15) == [(2, 2), (1, 6), (0, 14)]
    assert perfect_subtrees(4, 4) == []
    for start, end in [(1, 3), (4, 9), (6, 10), (-2, 0), (3, 2)]:
        with pytest.raises(ValueError):
            perfect_subtrees(start, end)
    with pytest.raises(ValueError):
        subtree_hash(2, 0, lambda level, index: None)


# -- the log on SQLite and PostgreSQL ---------------------------------------------


def append(member, count, start=0):
    with member.node.sessions() as session:
        for i in range(start, start + count):
            log.record(session, "test", i=i)
        session.commit()


def leaf_hashes(member):
    with member.node.sessions() as session:
        return list(session.scalars(select(AuditEntry.leaf_hash).order_by(AuditEntry.seq)))


def stored_subtrees(member):
    with member.node.sessions() as session:
        rows = session.execute(select(AuditSubtree.level, AuditSubtree.idx, AuditSubtree.hash))
        return {(level, index): h for level, index, h in rows}


def check_proofs(member, leaves, pairs, kinds=("inclusion", "consistency")):
    """The log's proofs for these (index or old size, size) pairs equal the reference;
    each proof in its own session, as the HTTP routes do."""
    for first, size in pairs:
        tree = leaves[:size]
        if "inclusion" in kinds:
            with member.node.sessions() as session:
                answer = log.inclusion(session, first, size)
            assert [b64d(h) for h in answer["proof"]] == inclusion_proof(tree, first - 1)
            assert b64d(answer["leaf_hash"]) == tree[first - 1]
            assert b64d(answer["root"]) == root(tree)
        if "consistency" in kinds:
            with member.node.sessions() as session:
                answer = log.consistency(session, first, size)
            assert [b64d(h) for h in answer["proof"]] == consistency_proof(tree, first)
            assert b64d(answer["old_root"]) == root(tree[:first])
            assert b64d(answer["new_root"]) == root(tree)


@pytest.mark.parametrize("level", [2, 8])
def test_log_proofs_equal_the_reference(make_federation, monkeypatch, level):
    monkeypatch.setattr(log, "SUBTREE_LEVEL", level)
    kz = make_federation(("KZ",), serve=False)["KZ"]
    shuffle = random.Random(level)
    checkpoints = []
    for batch in (1, 40, 300, 215, 3, 500, 77):  # checkpoints at uneven sizes
        append(kz, batch)
        checkpoints.append(log.checkpoint(kz.node).size)
    append(kz, 130)  # past the last checkpoint: not in the subtree table yet
    leaves = leaf_hashes(kz)
    n = len(leaves)
    covered = (checkpoints[-1] >> level) << level
    stored = stored_subtrees(kz)
    expected = {
        (lv, index): h for lv, index, h in aligned_subtrees(0, leaves[:covered]) if lv >= level
    }
    assert stored == expected

    edges = sorted({1, 2, n - 1, n, *checkpoints, covered, covered + 1})
    check_proofs(kz, leaves, [(a, b) for a in edges for b in edges if a <= b])

    @settings(max_examples=80, deadline=None)
    @given(st.data())
    def random_pairs(data):
        size = data.draw(st.integers(1, n))
        check_proofs(kz, leaves, [(data.draw(st.integers(1, size)), size)])

    random_pairs()
    pairs = [(a, b) for a, b in (sorted(shuffle.sample(range(1, n + 1), 2)) for _ in range(30))]
    check_proofs(kz, leaves, pairs)
    with kz.node.sessions() as session:
        assert log.verify(session, kz.node.trust(), "KZ").ok


def test_proofs_read_no_leaf_hash_inside_stored_subtrees(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 1500)
    log.checkpoint(kz.node)
    leaves = leaf_hashes(kz)
    n = len(leaves)
    # Entries 1..1024 are two stored subtrees away from a proof for entry 1300; the
    # reference proof is computed before they go.
    pairs = [(1300, n), (1100, 1400), (1030, n)]
    with kz.node.sessions() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq <= 1024))
        session.commit()
    check_proofs(kz, leaves, pairs)
    with kz.node.sessions() as session, pytest.raises(NodeStateError) as refused:
        log.inclusion(session, 5, n)  # needs the leaf hashes of entries 1..256
    assert refused.value.code == "audit-gap" and "entries 1..256 are missing" in str(refused.value)


def test_a_proof_reads_three_statements_and_a_bounded_number_of_leaves(
    make_federation, monkeypatch
):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 2000)
    log.checkpoint(kz.node)
    append(kz, 90)  # past the last checkpoint
    leaves = leaf_hashes(kz)
    n = len(leaves)
    block = 1 << log.SUBTREE_LEVEL
    with kz.node.sessions() as session:
        covered = session.scalar(select(func.count()).where(AuditSubtree.level == 8)) * block
    read = []
    statements = []

    def counting(first, hashes):
        for level, index, h in aligned_subtrees(first, hashes):
            read.append(level == 0)
            yield level, index, h

    monkeypatch.setattr(merkle, "aligned_subtrees", counting)
    event.listen(kz.node.engine, "before_cursor_execute", lambda *_: statements.append(1))
    shuffle = random.Random(7)
    for _ in range(40):
        size = shuffle.choice([n, covered, shuffle.randint(1, n)])
        first = shuffle.randint(1, size)
        for kind in ("inclusion", "consistency"):
            read.clear()
            statements.clear()
            check_proofs(kz, leaves, [(first, size)], kinds=(kind,))
            # The proved entry's block and the partial blocks at the two sizes, plus the
            # entries past the stored subtrees; never the whole log.
            assert sum(read) <= 2 * block + max(0, size - covered)
            assert len(statements) <= 3


def test_a_lost_subtree_row_is_folded_from_its_leaves(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 1100)
    log.checkpoint(kz.node)
    leaves = leaf_hashes(kz)
    with kz.node.sessions() as session:
        session.execute(delete(AuditSubtree).where(AuditSubtree.level == 9))
        session.commit()
    check_proofs(kz, leaves, [(1, 1024), (600, len(leaves)), (3, 513)])


def test_a_log_from_before_the_table_is_filled_at_the_next_checkpoint(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 700)
    log.checkpoint(kz.node)
    leaves = leaf_hashes(kz)
    full = stored_subtrees(kz)
    assert set(full) == {(8, 0), (8, 1), (9, 0)}
    with kz.node.sessions() as session:  # as after migration 0010 on an existing log
        session.execute(delete(AuditSubtree))
        session.commit()
    check_proofs(kz, leaves, [(1, len(leaves)), (300, 600), (len(leaves), len(leaves))])

    append(kz, 400)
    assert log.checkpoint(kz.node) is not None
    leaves = leaf_hashes(kz)
    expected = {
        (lv, index): h for lv, index, h in aligned_subtrees(0, leaves) if lv >= log.SUBTREE_LEVEL
    }
    assert stored_subtrees(kz) == expected and (10, 0) in expected
    check_proofs(kz, leaves, [(5, len(leaves)), (700, 1000)])

    # Nothing new, but a table that lags is still filled (and commits on its own).
    with kz.node.sessions() as session:
        session.execute(delete(AuditSubtree).where(AuditSubtree.level == 8, AuditSubtree.idx > 1))
        session.execute(delete(AuditSubtree).where(AuditSubtree.level > 8))
        session.commit()
    assert log.checkpoint(kz.node) is None
    assert stored_subtrees(kz) == expected


def test_migration_0010_on_a_populated_log(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 600)
    log.checkpoint(kz.node)
    engine = kz.node.engine
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:  # back to the schema before subtree hashes
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    assert "audit_subtrees" not in inspect(engine).get_table_names()
    db.upgrade(engine)
    assert stored_subtrees(kz) == {}
    leaves = leaf_hashes(kz)
    check_proofs(kz, leaves, [(1, len(leaves)), (400, 520)])
    append(kz, 10)
    assert log.checkpoint(kz.node) is not None
    leaves = leaf_hashes(kz)
    assert set(stored_subtrees(kz)) == {(8, 0), (8, 1), (9, 0)}
    check_proofs(kz, leaves, [(1, len(leaves)), (400, 520)])
    with kz.node.sessions() as session:
        assert log.verify(session, kz.node.trust(), "KZ").ok


def test_a_table_ahead_of_the_checkpoints_does_not_stop_them(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 300)
    log.checkpoint(kz.node)
    append(kz, 400)
    dropped = log.checkpoint(kz.node)
    before = stored_subtrees(kz)
    with kz.node.sessions() as session:  # the newest checkpoint row is lost
        session.delete(session.get(AuditCheckpoint, dropped.size))
        session.commit()
    append(kz, 50)
    made = log.checkpoint(kz.node)
    assert made is not None and made.size == dropped.size + 50
    assert stored_subtrees(kz) == before
    leaves = leaf_hashes(kz)
    check_proofs(kz, leaves, [(10, made.size), (300, made.size)])


def test_filling_the_table_refuses_entries_that_no_longer_match(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 600)
    log.checkpoint(kz.node)
    with kz.node.sessions() as session:
        session.execute(delete(AuditSubtree))
        session.execute(update(AuditEntry).where(AuditEntry.seq == 77).values(leaf_hash=HASHES[0]))
        session.commit()
    append(kz, 10)
    with pytest.raises(NodeStateError) as refused:
        log.checkpoint(kz.node)
    assert refused.value.code == "audit-mismatch"


def test_verify_names_a_changed_deleted_or_added_subtree_row(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 1100)
    log.checkpoint(kz.node)
    append(kz, 20)

    def verify():
        with kz.node.sessions() as session:
            return log.verify(session, kz.node.trust(), "KZ")

    def change(*statements):
        with kz.node.sessions() as session:
            for statement in statements:
                session.execute(statement)
            session.commit()

    assert verify().ok
    original = stored_subtrees(kz)[(9, 0)]
    row = (AuditSubtree.level == 9) & (AuditSubtree.idx == 0)

    change(update(AuditSubtree).where(row).values(hash=HASHES[1]))
    finding = verify()
    assert not finding.ok
    assert "subtree hash at level 9, index 0 does not match entries 1..512" in finding.problem

    change(delete(AuditSubtree).where(row))
    assert "level 9, index 0 (entries 1..512) is missing" in verify().problem
    change(insert(AuditSubtree).values(level=9, idx=0, hash=original))
    assert verify().ok

    change(insert(AuditSubtree).values(level=8, idx=4, hash=HASHES[2]))
    assert "level 8, index 4 covers entries 1025..1280, beyond" in verify().problem
    change(delete(AuditSubtree).where(AuditSubtree.idx == 4))

    change(insert(AuditSubtree).values(level=3, idx=0, hash=HASHES[3]))
    assert "level 3, index 0 is no subtree of the log" in verify().problem
    change(delete(AuditSubtree).where(AuditSubtree.level == 3))
    assert verify().ok


def test_bad_proof_requests(make_federation):
    kz = make_federation(("KZ",), serve=False)["KZ"]
    append(kz, 5)
    n = len(leaf_hashes(kz))
    with kz.node.sessions() as session:
        for index, size in [(0, n), (2, 1), (1, n + 1)]:
            with pytest.raises(ApiError) as refused:
                log.inclusion(session, index, size)
            assert (refused.value.code, refused.value.status) == ("bad-proof-request", 422)
        for old, new in [(0, n), (3, 2), (1, n + 1)]:
            with pytest.raises(ApiError) as refused:
                log.consistency(session, old, new)
            assert refused.value.code == "bad-proof-request"
