"""RFC 9162 Merkle tree: known answers, exhaustive proofs up to 64 leaves, properties.

Known answers are the Certificate Transparency reference values for the
standard 8 test leaves, copied from transparency-dev/merkle
``testonly/constants.go`` (RootHashes) and ``proof/verify_test.go``
(inclusionProofs, consistencyProofs). The random-log tests also compare with a
naive recursive MTH written here from RFC 9162 §2.1.1, independent of the module.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [  # by tree size 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H_96A2 = "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
H_5F08 = "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"
H_6B47 = "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
H_BC1A = "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"
H_CA85 = "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"
H_D37E = "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"
H_FAC5 = "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
H_6E34 = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
H_0EBC = "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"
H_B086 = "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"
INCLUSION = [  # (index, size, path), 0-based index
    (0, 8, [H_96A2, H_5F08, H_6B47]),
    (5, 8, [H_BC1A, H_CA85, H_D37E]),
    (2, 3, [H_FAC5]),
    (1, 5, [H_6E34, H_5F08, H_BC1A]),
    (0, 1, []),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, [H_96A2, H_5F08, H_6B47]),
    (6, 8, [H_0EBC, H_CA85, H_D37E]),
    (2, 5, [H_5F08, H_BC1A]),
    (6, 7, [H_0EBC, H_B086, H_D37E]),
]

MAX = 64
ENTRIES = [b"entry-%d" % i for i in range(MAX)]
HASHES = [leaf_hash(e) for e in ENTRIES]
KAT_HASHES = [leaf_hash(e) for e in LEAVES]


def naive_mth(entries: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 written out directly, for cross-checking."""
    if not entries:
        return hashlib.sha256(b"").digest()
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    left, right = naive_mth(entries[:k]), naive_mth(entries[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


# -- known answers -----------------------------------------------------------


@pytest.mark.parametrize("size", range(9))
def test_reference_roots(size: int) -> None:
    assert root(KAT_HASHES[:size]).hex() == ROOTS[size]
    assert naive_mth(LEAVES[:size]).hex() == ROOTS[size]


def test_empty_root_is_hash_of_nothing() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(KAT_HASHES[:size], index)
    assert [p.hex() for p in proof] == path
    assert verify_inclusion(KAT_HASHES[index], index, size, proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_reference_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(KAT_HASHES[:new], old)
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)


# -- exhaustive up to 64 leaves ----------------------------------------------

ROOTS_BY_SIZE = [root(HASHES[:n]) for n in range(MAX + 1)]


@pytest.mark.parametrize("size", range(1, MAX + 1))
def test_every_inclusion_proof_verifies_and_every_alteration_fails(size: int) -> None:
    tree, tree_root = HASHES[:size], ROOTS_BY_SIZE[size]
    for index in range(size):
        proof = inclusion_proof(tree, index)
        leaf = tree[index]
        assert verify_inclusion(leaf, index, size, proof, tree_root)
        for i in range(len(proof)):
            altered = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
            assert not verify_inclusion(leaf, index, size, altered, tree_root)
        for other in {index - 1, index + 1, index ^ 2} - {index}:
            assert not verify_inclusion(leaf, other, size, proof, tree_root)
        # Sizes as in transparency-dev/merkle's probes. A neighbouring size often has the
        # same path shape, so it can verify against the same root; a checkpoint's
        # signature binds size and root together, which is what rules that out.
        for other_size in {size * 2, size // 2} - {size}:
            assert not verify_inclusion(leaf, index, other_size, proof, tree_root)
        assert not verify_inclusion(leaf, index, size, proof, flip(tree_root))
        assert not verify_inclusion(flip(leaf), index, size, proof, tree_root)
        assert not verify_inclusion(leaf, index, size, [*proof, tree_root], tree_root)
        assert not verify_inclusion(leaf, index, size, [tree_root, *proof], tree_root)
        if proof:
            assert not verify_inclusion(leaf, index, size, proof[:-1], tree_root)


@pytest.mark.parametrize("new", range(1, MAX + 1))
def test_every_consistency_proof_verifies_and_every_alteration_fails(new: int) -> None:
    new_root = ROOTS_BY_SIZE[new]
    for old in range(1, new + 1):
        old_root = ROOTS_BY_SIZE[old]
        proof = consistency_proof(HASHES[:new], old)
        assert verify_consistency(old, new, old_root, new_root, proof)
        assert not verify_consistency(old, new, flip(old_root), new_root, proof)
        assert not verify_consistency(old, new, old_root, flip(new_root), proof)
        if old == new:
            assert proof == []
            assert not verify_consistency(old, new, old_root, new_root, [old_root])
            continue
        assert not verify_consistency(old, new, new_root, old_root, proof)
        assert not verify_consistency(new, old, old_root, new_root, proof)
        assert not verify_consistency(old, new, old_root, new_root, [])
        for i in range(len(proof)):
            altered = [*proof[:i], flip(proof[i]), *proof[i + 1 :]]
            assert not verify_consistency(old, new, old_root, new_root, altered)
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
        assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])
        assert not verify_consistency(old, new, old_root, new_root, [proof[0], *proof])
        for other_old in {old - 1, old + 1, old ^ 2} - {old, 0}:
            assert not verify_consistency(other_old, new, old_root, new_root, proof)
        for other_new in {new * 2, new // 2} - {new}:  # see the inclusion test on sizes
            assert not verify_consistency(old, other_new, old_root, new_root, proof)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 33, 64])
def test_different_logs_of_the_same_size_are_not_consistent(size: int) -> None:
    forked = [*HASHES[: size - 1], leaf_hash(b"forked")]
    forked_root = root(forked)
    assert not verify_consistency(size, size, ROOTS_BY_SIZE[size], forked_root, [])
    # Neither log's proof links the other's root to a common extension.
    longer = [*HASHES[:size], *HASHES[:3]]
    proof = consistency_proof(longer, size)
    assert verify_consistency(size, len(longer), ROOTS_BY_SIZE[size], root(longer), proof)
    assert not verify_consistency(size, len(longer), forked_root, root(longer), proof)


def test_size_zero_is_consistent_only_with_the_empty_root() -> None:
    assert consistency_proof(HASHES[:5], 0) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS_BY_SIZE[5], [])
    assert not verify_consistency(0, 5, ROOTS_BY_SIZE[1], ROOTS_BY_SIZE[5], [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS_BY_SIZE[5], [EMPTY_ROOT])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        inclusion_proof(HASHES[:4], 4)
    with pytest.raises(ValueError):
        inclusion_proof([], 0)
    with pytest.raises(ValueError):
        consistency_proof(HASHES[:4], 5)
    # Verifiers return False, never raise, on wrong-length or wrong-type values.
    assert not verify_inclusion(b"short", 0, 1, [], b"short")
    assert not verify_inclusion(HASHES[0], 0, 1, ["x" * 32], HASHES[0])  # type: ignore[list-item]
    assert not verify_inclusion(HASHES[0], -1, 1, [], HASHES[0])
    assert not verify_consistency(1, 2, HASHES[0], ROOTS_BY_SIZE[2], [b"\x00" * 31])


# -- compact range -----------------------------------------------------------


def test_compact_range_matches_root_at_every_size() -> None:
    compact = CompactRange()
    assert compact.root() == EMPTY_ROOT
    extra = [leaf_hash(b"more-%d" % i) for i in range(300)]
    all_hashes = HASHES + extra
    for n, h in enumerate(all_hashes, start=1):
        compact.append(h)
        assert compact.size == n
        assert len(compact.hashes) == n.bit_count()
        assert compact.root() == root(all_hashes[:n])


def test_compact_range_resumes_from_state() -> None:
    compact = CompactRange()
    for e in ENTRIES[:13]:
        compact.append_entry(e)
    resumed = CompactRange.from_state(compact.size, compact.hashes)
    for e in ENTRIES[13:]:
        resumed.append_entry(e)
    assert resumed.root() == ROOTS_BY_SIZE[MAX]
    with pytest.raises(ValueError):
        CompactRange.from_state(13, compact.hashes[:-1])
    with pytest.raises(ValueError):
        compact.append(b"short")


def test_compact_range_million_leaves_stays_small() -> None:
    compact = CompactRange()
    h = leaf_hash(b"x")
    for _ in range(1 << 20):
        compact.append(h)
    assert len(compact.hashes) == 1
    # A perfect tree of identical leaves: each level hashes two copies of the one below.
    expected = h
    for _ in range(20):
        expected = hashlib.sha256(b"\x01" + expected + expected).digest()
    assert compact.root() == expected


# -- properties --------------------------------------------------------------

logs = st.lists(st.binary(max_size=16), min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(logs, st.data())
def test_random_log_proofs(entries: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(e) for e in entries]
    n = len(hashes)
    tree_root = root(hashes)
    assert tree_root == naive_mth(entries)
    index = data.draw(st.integers(0, n - 1))
    assert verify_inclusion(hashes[index], index, n, inclusion_proof(hashes, index), tree_root)
    old = data.draw(st.integers(1, n))
    proof = consistency_proof(hashes, old)
    assert verify_consistency(old, n, root(hashes[:old]), tree_root, proof)


@settings(max_examples=60, deadline=None)
@given(logs, logs)
def test_random_fork_is_detected(entries: list[bytes], other: list[bytes]) -> None:
    old = min(len(entries), len(other))
    if entries[:old] == other[:old]:
        return
    hashes = [leaf_hash(e) for e in entries]
    forked_old_root = root([leaf_hash(e) for e in other[:old]])
    proof = consistency_proof(hashes, old)
    assert not verify_consistency(old, len(hashes), forked_old_root, root(hashes), proof)
