"""Fingerprints: SHA-256(pub) as 8 groups of 5 digits, comparable by phone."""

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.fingerprint import fingerprint, short

FORMAT = re.compile(r"\d{5}( \d{5}){7}")


def test_known_answer() -> None:
    # SHA-256 of 32 zero bytes is 66687aad f862bd77 6c8fc18b 8e9f8e20 ...
    assert fingerprint(bytes(32)) == "23181 20599 60523 21280 18917 18131 94429 40261"
    assert short(bytes(32)) == "23181 20599"


@given(st.binary(min_size=32, max_size=32))
def test_format_and_derivation(pub: bytes) -> None:
    text = fingerprint(pub)
    assert FORMAT.fullmatch(text)
    digest = hashlib.sha256(pub).digest()
    expected = [int.from_bytes(digest[i * 4 : (i + 1) * 4], "big") % 100000 for i in range(8)]
    assert [int(g) for g in text.split(" ")] == expected
    assert text.startswith(short(pub) + " ")


def test_different_keys_differ() -> None:
    assert fingerprint(bytes(32)) != fingerprint(bytes(31) + b"\x01")


@pytest.mark.parametrize("pub", [b"", bytes(31), bytes(33), "00" * 32])
def test_wrong_length_refused(pub: object) -> None:
    with pytest.raises(ValueError):
        fingerprint(pub)  # type: ignore[arg-type]
