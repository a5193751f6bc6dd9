"""Human-checkable key fingerprints that two people can compare by phone.

``fingerprint(pub)`` is SHA-256(pub) written as 8 groups of 5 decimal digits, in the
style of Signal safety numbers: the 32-byte digest is cut into 8 chunks of 4 bytes, each
read as a big-endian integer, reduced mod 100000 and zero-padded to 5 digits, e.g.
``"04521 88013 ..."``. (Signal takes 5-byte chunks of a longer hash; a SHA-256 digest
has exactly 8 chunks of 4 bytes. The bias of 2^32 mod 10^5 is about 2^-15 per group.)
That is about 133 bits, so a forged key matching a fingerprint is out of reach.

``short(pub)`` is the first 2 groups, for telling keys apart in a list. It is NOT
enough to verify a key: always compare the full fingerprint.
"""

import hashlib

GROUPS = 8
CHUNK_BYTES = 4
SHORT_GROUPS = 2


def _groups(pub: bytes) -> list[str]:
    if not isinstance(pub, bytes) or len(pub) != 32:
        raise ValueError("a fingerprint is taken of a 32-byte public key")
    digest = hashlib.sha256(pub).digest()
    return [
        f"{int.from_bytes(digest[i : i + CHUNK_BYTES], 'big') % 100000:05d}"
        for i in range(0, GROUPS * CHUNK_BYTES, CHUNK_BYTES)
    ]


def fingerprint(pub: bytes) -> str:
    """SHA-256(pub) as 8 space-separated groups of 5 digits (module docstring)."""
    return " ".join(_groups(pub))


def short(pub: bytes) -> str:
    """The first 2 groups of ``fingerprint(pub)``, for lists only."""
    return " ".join(_groups(pub)[:SHORT_GROUPS])
