"""Strict base64url without padding (PROTOCOL §1)."""

import base64
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.b64 import b64d, b64e
from schemas.errors import WireFormatError

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(st.integers(0, 64).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_round_trip(raw: bytes) -> None:
    text = b64e(raw)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", text)
    assert len(text) == (len(raw) * 4 + 2) // 3
    assert text == base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    assert b64d(text) == raw
    assert b64d(text, length=len(raw)) == raw


@pytest.mark.parametrize("n", range(65))
def test_every_length_round_trips(n: int) -> None:
    raw = bytes(range(256))[:n]
    assert b64d(b64e(raw)) == raw


@given(st.text(alphabet=ALPHABET, max_size=24))
def test_a_decoded_string_always_re_encodes_to_itself(text: str) -> None:
    try:
        raw = b64d(text)
    except WireFormatError as e:
        assert e.code == "malformed"
        assert (
            len(text) % 4 == 1
            or b64e(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))) != text
        )
    else:
        assert b64e(raw) == text


@given(st.binary(min_size=1, max_size=32), st.data())
def test_non_zero_trailing_bits_are_rejected(raw: bytes, data: st.DataObject) -> None:
    text = b64e(raw)
    spare_bits = {0: 0, 1: 4, 2: 2}[len(raw) % 3]
    if spare_bits == 0:
        return
    last = ALPHABET.index(text[-1])
    flipped = last | data.draw(st.integers(1, 2**spare_bits - 1))
    mutated = text[:-1] + ALPHABET[flipped]
    with pytest.raises(WireFormatError):
        b64d(mutated)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("AA==", "padding"),
        ("AAA=", "padding"),
        ("AA=", "padding"),
        ("+A", "standard alphabet plus"),
        ("/A", "standard alphabet slash"),
        ("AA AA", "inner space"),
        ("AAAA\n", "trailing newline"),
        (" AAAA", "leading space"),
        ("A", "length 1 mod 4"),
        ("AAAAA", "length 1 mod 4"),
        ("AB", "non-zero trailing bits (AA is canonical)"),
        ("AAB", "non-zero trailing bits (AAA is canonical)"),
        ("AAAAAf", "non-zero trailing bits"),
        ("٠٠", "non-ASCII digits"),
        ("ÀA", "non-ASCII letter"),
        ("AA.", "dot"),
    ],
)
def test_rejects(text: str, why: str) -> None:
    with pytest.raises(WireFormatError) as caught:
        b64d(text)
    assert caught.value.code == "malformed", why


def test_canonical_neighbours_are_accepted() -> None:
    assert b64d("AA") == b"\x00"
    assert b64d("AAA") == b"\x00\x00"
    assert b64d("") == b""
    assert b64d("_-8") == b"\xff\xef"


@pytest.mark.parametrize("value", [b"AAAA", None, 0, ["AAAA"]])
def test_only_strings_are_decoded(value: object) -> None:
    with pytest.raises(WireFormatError):
        b64d(value)


def test_exact_length_is_enforced() -> None:
    text = b64e(bytes(32))
    assert b64d(text, length=32) == bytes(32)
    for wrong in (31, 33):
        with pytest.raises(WireFormatError, match="32"):
            b64d(text, length=wrong)


@given(
    st.text(alphabet=ALPHABET, max_size=12),
    st.characters(blacklist_characters=ALPHABET, blacklist_categories=["Cs"]),
    st.text(alphabet=ALPHABET, max_size=12),
)
def test_any_character_outside_the_alphabet_is_named_as_such(
    before: str, intruder: str, after: str
) -> None:
    # Whatever the length: a stray character is reported as one, not as a bad length.
    with pytest.raises(WireFormatError, match="outside the base64url alphabet"):
        b64d(before + intruder + after)
