"""RFC 9162 §2.1 Merkle tree hashes and proofs (PROTOCOL §6).

The tree is over byte-string log entries with SHA-256:

* leaf hash ``SHA-256(0x00 || entry)`` and node hash ``SHA-256(0x01 || left || right)``
  (§2.1.1), so a leaf can never be passed off as an interior node;
* an inclusion proof shows that a leaf is in a tree of a given size (§2.1.3);
* a consistency proof shows that a tree of an older size is a prefix of a newer
  one, i.e. that the log only appended (§2.1.4).

Builders (``root``, ``inclusion_proof``, ``consistency_proof``) take the list of
leaf hashes held by the log. Verifiers take peer-supplied values and return
``False`` for anything that does not prove the claim, including hashes of the
wrong length; they never raise on bad input. :class:`CompactRange` keeps only
the O(log n) hashes of the perfect subtrees needed to compute the current root,
so a log can be checkpointed without loading every leaf hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

HASH_BYTES = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) = SHA-256() (§2.1.1): the root of the empty tree."""


def leaf_hash(entry: bytes) -> bytes:
    """§2.1.1: MTH({d(0)}) = SHA-256(0x00 || d(0))."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """§2.1.1: interior node = SHA-256(0x01 || MTH(left) || MTH(right))."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """§2.1.1: k, the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """§2.1.1: the Merkle Tree Hash MTH(D[n]) of the leaves with these hashes."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root(leaf_hashes[:k]), root(leaf_hashes[k:]))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """§2.1.3.1: PATH(m, D[n]), the audit path of leaf ``index`` in the tree of all leaves."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of size {n}")
    return _path(index, leaf_hashes)


def _path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _split(n)
    if m < k:
        return _path(m, leaves[:k]) + [root(leaves[k:])]
    return _path(m - k, leaves[k:]) + [root(leaves[:k])]


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """§2.1.3.2: does ``proof`` show ``leaf_hash`` at ``index`` in the tree ``(size, root)``?"""
    if not _all_hashes([leaf_hash, root, *proof]):
        return False
    # Step 1: the index must be inside the tree.
    if not 0 <= index < size:
        return False
    # Steps 2-3.
    fn, sn = index, size - 1
    r = leaf_hash
    # Step 4.
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # Step 5.
    return sn == 0 and hmac.compare_digest(r, root)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """§2.1.4.1: PROOF(m, D[n]) = SUBPROOF(m, D[n], true) for the tree of all leaves.

    The proof is empty when ``old_size`` is 0 or equal to the tree size: those
    trees are consistent by definition (§2.1.4 defines proofs for 0 < m < n).
    """
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise ValueError(f"old size {old_size} is outside 0..{n}")
    if old_size in (0, n):
        return []
    return _subproof(old_size, leaf_hashes, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], complete) + [root(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [root(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """§2.1.4.2: does ``proof`` show the tree ``(old_size, old_root)`` is a prefix of the newer one?

    Outside the RFC's 0 < m < n: equal sizes need an empty proof and equal roots,
    and size 0 needs an empty proof and ``old_root`` equal to the empty-tree root.
    """
    if not _all_hashes([old_root, new_root, *proof]):
        return False
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    # Step 1.
    if not proof:
        return False
    path = list(proof)
    # Step 2.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Step 3.
    fn, sn = old_size - 1, new_size - 1
    # Step 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # Step 7.
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def _all_hashes(values: Iterable[object]) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_BYTES for v in values)


class CompactRange:
    """The frontier of a log: one hash per perfect subtree, largest (leftmost) first.

    A tree of size n decomposes into perfect subtrees whose sizes are the set
    bits of n, and MTH of the whole tree (§2.1.1) folds them right to left. So
    appending and computing the root need only popcount(n) <= log2(n) + 1 hashes.
    The node may persist ``(size, hashes)`` and resume with :meth:`from_state`.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []

    @classmethod
    def from_state(cls, size: int, hashes: Sequence[bytes]) -> CompactRange:
        """Resume a frontier stored earlier; checks the hash count matches the size."""
        if size < 0 or len(hashes) != size.bit_count() or not _all_hashes(hashes):
            raise ValueError("compact range state does not match its size")
        compact = cls()
        compact._size = size
        compact._hashes = list(hashes)
        return compact

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add the next leaf (by its leaf hash), merging equal-sized subtrees."""
        if not _all_hashes([leaf_hash]):
            raise ValueError(f"leaf hash must be {HASH_BYTES} bytes")
        merged = leaf_hash
        size = self._size
        while size & 1:
            merged = node_hash(self._hashes.pop(), merged)
            size >>= 1
        self._hashes.append(merged)
        self._size += 1

    def append_entry(self, entry: bytes) -> None:
        self.append(leaf_hash(entry))

    def root(self) -> bytes:
        """MTH of the current tree (§2.1.1)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            r = node_hash(left, r)
        return r
