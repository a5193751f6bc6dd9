"""RFC 9162 §2.1 Merkle tree hashes and proofs (PROTOCOL §6).

The tree is over byte-string log entries with SHA-256:

* leaf hash ``SHA-256(0x00 || entry)`` and node hash ``SHA-256(0x01 || left || right)``
  (§2.1.1), so a leaf can never be passed off as an interior node;
* an inclusion proof shows that a leaf is in a tree of a given size (§2.1.3);
* a consistency proof shows that a tree of an older size is a prefix of a newer
  one, i.e. that the log only appended (§2.1.4).

Builders (``root``, ``inclusion_proof``, ``consistency_proof``) take the list of
leaf hashes held by the log; they are the reference the rest is tested against.
Verifiers take peer-supplied values and return ``False`` for anything that does
not prove the claim, including hashes of the wrong length; they never raise on
bad input. :class:`CompactRange` keeps only the O(log n) hashes of the perfect
subtrees needed to compute the current root, so a log can be checkpointed
without loading every leaf hash.

A log too large to load builds the same proofs from **perfect, aligned
subtrees**: the subtree at ``(level, index)`` is MTH of the 2**level leaves from
``index * 2**level``. Every node of an RFC 9162 tree is a run of such subtrees
(:func:`perfect_subtrees`), so :func:`inclusion_ranges` and
:func:`consistency_ranges` state a proof as the leaf ranges whose MTHs it
lists, and :func:`inclusion_proof_from`, :func:`consistency_proof_from` and
:func:`range_root` evaluate them through a :data:`SubtreeLookup` that the
caller backs with whatever it stores. :func:`aligned_subtrees` folds a run of
leaves into those subtrees with O(log n) memory.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Iterator, Sequence

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


# -- proofs from perfect subtrees -------------------------------------------------

SubtreeLookup = Callable[[int, int], "bytes | None"]
"""``(level, index) -> hash`` of the perfect subtree of the 2**level leaves from
``index * 2**level``, or None if the caller does not hold it (it is then computed
from its two halves). Level 0 are the leaf hashes, which must be known."""


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees ``(level, index)`` that make up the tree node over leaves
    ``[start, end)``, largest (leftmost) first: one per set bit of ``end - start``.

    Every node of an RFC 9162 tree starts at a multiple of the smallest power of two
    not below its size (the left part of a split is the largest power of two smaller
    than the whole, §2.1.1); other ranges are no tree node and are refused.
    """
    count = end - start
    if start < 0 or count < 0 or start % (1 << max(count - 1, 0).bit_length()):
        raise ValueError(f"leaves [{start}, {end}) are not a node of a Merkle tree")
    pieces = []
    at = start
    for level in reversed(range(count.bit_length())):
        if count >> level & 1:
            pieces.append((level, at >> level))
            at += 1 << level
    return pieces


def subtree_hash(level: int, index: int, lookup: SubtreeLookup) -> bytes:
    """The hash of perfect subtree ``(level, index)``: from ``lookup``, or from its halves."""
    known = lookup(level, index)
    if known is not None:
        return known
    if level == 0:
        raise ValueError(f"the hash of leaf {index} is not known")
    return node_hash(
        subtree_hash(level - 1, 2 * index, lookup), subtree_hash(level - 1, 2 * index + 1, lookup)
    )


def range_root(start: int, end: int, lookup: SubtreeLookup) -> bytes:
    """§2.1.1: MTH(D[start:end]) of a tree node, folding its perfect subtrees right to
    left as :meth:`CompactRange.root` does; ``range_root(0, n, …)`` is the tree's root."""
    if start == end:
        return EMPTY_ROOT
    hashes = [subtree_hash(level, index, lookup) for level, index in perfect_subtrees(start, end)]
    r = hashes[-1]
    for left in reversed(hashes[:-1]):
        r = node_hash(left, r)
    return r


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """§2.1.3.1: PATH(m, D[n]) as the leaf ranges ``[start, end)`` whose MTHs it lists,
    in proof order (the leaf's sibling first)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:  # m < k: PATH(m, D[0:k]) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
            ranges.append((start, start + k))
            start += k
    return ranges[::-1]


def consistency_ranges(old_size: int, size: int) -> list[tuple[int, int]]:
    """§2.1.4.1: PROOF(m, D[n]) as the leaf ranges whose MTHs it lists, in proof order;
    empty when ``old_size`` is 0 or ``size`` (as :func:`consistency_proof`)."""
    if not 0 <= old_size <= size:
        raise ValueError(f"old size {old_size} is outside 0..{size}")
    if old_size in (0, size):
        return []
    ranges = []
    start, end, m, complete = 0, size, old_size, True
    while True:  # SUBPROOF(m, D[start:end], complete)
        if m == end - start:
            if not complete:
                ranges.append((start, end))
            break
        k = _split(end - start)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            ranges.append((start + k, end))
            end = start + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    return ranges[::-1]


def inclusion_proof_from(index: int, size: int, lookup: SubtreeLookup) -> list[bytes]:
    """:func:`inclusion_proof` of leaf ``index`` in the tree of ``size`` leaves, from subtrees."""
    return [range_root(a, b, lookup) for a, b in inclusion_ranges(index, size)]


def consistency_proof_from(old_size: int, size: int, lookup: SubtreeLookup) -> list[bytes]:
    """:func:`consistency_proof` between trees ``old_size`` and ``size``, from subtrees."""
    return [range_root(a, b, lookup) for a, b in consistency_ranges(old_size, size)]


def aligned_subtrees(first: int, leaf_hashes: Iterable[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """Every perfect, aligned subtree ``(level, index, hash)`` lying wholly inside the run
    of leaves ``first, first + 1, …`` with these hashes, each as soon as its last leaf is
    read (level 0: the leaves themselves). Holds O(log n) hashes whatever the run's length."""
    pending: list[tuple[int, int, bytes]] = []  # subtrees still waiting for a right sibling
    for offset, leaf in enumerate(leaf_hashes):
        level, index, h = 0, first + offset, leaf
        yield level, index, h
        while index & 1 and pending and pending[-1][:2] == (level, index - 1):
            h = node_hash(pending.pop()[2], h)
            level, index = level + 1, index >> 1
            yield level, index, h
        pending.append((level, index, h))


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

    def append(
        self, leaf_hash: bytes, completed: Callable[[int, int, bytes], None] | None = None
    ) -> None:
        """Add the next leaf (by its leaf hash), merging equal-sized subtrees.

        ``completed(level, index, hash)`` is told each perfect subtree (level >= 1) that
        this leaf completes, smallest first, so a log can store them as it goes.
        """
        if not _all_hashes([leaf_hash]):
            raise ValueError(f"leaf hash must be {HASH_BYTES} bytes")
        merged = leaf_hash
        size = self._size
        level = 0
        while size & 1:
            merged = node_hash(self._hashes.pop(), merged)
            size >>= 1
            level += 1
            if completed is not None:
                completed(level, size, merged)
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
