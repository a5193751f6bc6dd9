"""Strict base64url without padding (PROTOCOL §1, RFC 4648 §5).

A decoder that accepts several spellings of the same bytes lets an attacker
change a signed document without changing what it means, so decoding rejects
padding, characters outside the alphabet and non-canonical trailing bits.
"""

import base64
import binascii
import re

from .errors import WireFormatError

# base64url to standard base64 in one bytes.translate: "-" and "_" become "+" and "/",
# and "+", "/" and "=" (not base64url, or padding, which xb1 refuses) become "!", which
# the strict decoder refuses like every other byte outside the alphabet.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
_ALPHABET = re.compile(r"[A-Za-z0-9_-]*\Z")  # for the error of an impossible length only
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
    outside = f"{what} has characters outside the base64url alphabet or padding"
    try:
        standard = text.encode("ascii").translate(_TO_STANDARD)
    except UnicodeEncodeError:
        raise WireFormatError(outside) from None
    if len(text) % 4 == 1:
        if not _ALPHABET.match(text):
            raise WireFormatError(outside)
        raise WireFormatError(f"{what} has an impossible base64url length")
    try:
        raw = binascii.a2b_base64(standard + b"=" * (-len(text) % 4), strict_mode=True)
    except binascii.Error:
        raise WireFormatError(outside) from None
    # Canonical means the bits below the last whole byte are zero: the low 4 bits of
    # the last character after 2 characters of a group, the low 2 after 3.
    spare = _SPARE_BITS[len(text) % 4]
    if spare and _VALUE[text[-1]] & spare:
        raise WireFormatError(f"{what} is not canonical base64url (non-zero trailing bits)")
    if length is not None and len(raw) != length:
        raise WireFormatError(f"{what} must decode to {length} bytes, got {len(raw)}")
    return raw
