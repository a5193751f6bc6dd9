"""Strict base64url without padding (PROTOCOL §1, RFC 4648 §5).

A decoder that accepts several spellings of the same bytes lets an attacker
change a signed document without changing what it means, so decoding rejects
padding, characters outside the alphabet and non-canonical trailing bits.
"""

import base64
import re

from .errors import WireFormatError

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*\Z")


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
    if b64e(raw) != text:
        raise WireFormatError(f"{what} is not canonical base64url (non-zero trailing bits)")
    if length is not None and len(raw) != length:
        raise WireFormatError(f"{what} must decode to {length} bytes, got {len(raw)}")
    return raw
