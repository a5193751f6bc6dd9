"""Strict base64url without padding (PROTOCOL §1, RFC 4648 §5).

A decoder that accepts several spellings of the same bytes lets an attacker
change a signed document without changing what it means, so decoding rejects
padding, characters outside the alphabet and non-canonical trailing bits.
"""

import base64
import re

from .errors import WireFormatError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*\Z")
_VALUE = {
    ch: index
    for index, ch in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
}
_SPARE_BITS = (0, 0, 0b1111, 0b11)  # by len(text) % 4 (1 is refused before)


def b64e(raw: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64d(text: object, *, length: int | None = None, what: str = "value") -> bytes:
    """Decode unpadded base64url strictly; optionally require an exact decoded length."""
    if not isinstance(text, str):
        raise WireFormatError(f"{what} must be a base64url string")
    if not _ALPHABET.match(text):
        raise WireFormatError(f"{what} has characters outside the base64url alphabet or padding")
    if len(text) % 4 == 1:
        raise WireFormatError(f"{what} has an impossible base64url length")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # Canonical means the bits below the last whole byte are zero: the low 4 bits of
    # the last character after 2 characters of a group, the low 2 after 3.
    spare = _SPARE_BITS[len(text) % 4]
    if spare and _VALUE[text[-1]] & spare:
        raise WireFormatError(f"{what} is not canonical base64url (non-zero trailing bits)")
    if length is not None and len(raw) != length:
        raise WireFormatError(f"{what} must decode to {length} bytes, got {len(raw)}")
    return raw
