"""The audit log's pure library layer (PROTOCOL §6).

* :mod:`gateway.audit.merkle` — the RFC 9162 Merkle tree: roots, inclusion and
  consistency proofs, and a compact range for checkpointing a large log.
* :mod:`gateway.audit.note` — C2SP signed notes, tlog checkpoints and
  tlog cosignatures.

Nothing here touches the database or Flask; the node stores entries and serves
checkpoints on top of these functions.
"""
