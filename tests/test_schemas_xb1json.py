"""xb1-json (PROTOCOL §2): published vectors, round trips, and strictness."""

import json
import runpy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import xb1json
from schemas.b64 import b64d
from schemas.errors import NotCanonical, WireFormatError

VECTORS_DIR = Path(__file__).resolve().parent.parent / "schemas" / "vectors"
JSON_VECTORS = json.loads((VECTORS_DIR / "xb1-json.json").read_text(encoding="utf-8"))


def _vector_bytes(case: dict[str, Any]) -> bytes:
    if "input_b64" in case:
        return b64d(case["input_b64"])
    return case["input"].encode("utf-8")


def _reference(value: Any) -> bytes:
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


# --- published vectors ---------------------------------------------------------


def test_vector_file_is_generated_from_its_script() -> None:
    generator = runpy.run_path(str(VECTORS_DIR / "make_json_vectors.py"))
    assert generator["render"]() == (VECTORS_DIR / "xb1-json.json").read_text(encoding="utf-8")


def test_vectors_cover_every_outcome() -> None:
    outcomes = {case["expect"] for case in JSON_VECTORS}
    assert outcomes == {"ok", "malformed", "not-canonical"}
    assert len({case["name"] for case in JSON_VECTORS}) == len(JSON_VECTORS)


@pytest.mark.parametrize("case", JSON_VECTORS, ids=[case["name"] for case in JSON_VECTORS])
def test_vector(case: dict[str, Any]) -> None:
    raw = _vector_bytes(case)
    if case["expect"] == "ok":
        assert xb1json.loads_canonical(raw) == case["value"]
        assert xb1json.dumps(case["value"]) == raw
    else:
        with pytest.raises(WireFormatError) as caught:
            xb1json.loads_canonical(raw)
        assert caught.value.code == case["expect"]


# --- round trips ------------------------------------------------------------------

safe_integers = st.integers(-xb1json.MAX_SAFE_INTEGER, xb1json.MAX_SAFE_INTEGER)
# st.text() never draws surrogates, so every string is valid Unicode.
ascii_keys = st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | safe_integers | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(ascii_keys, children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_dumps_then_loads_canonical_gives_the_value_back(value: Any) -> None:
    raw = xb1json.dumps(value)
    assert raw == _reference(value)
    assert xb1json.loads_canonical(raw) == value


@given(json_values)
def test_indented_serialisation_is_not_canonical_unless_identical(value: Any) -> None:
    raw = json.dumps(value, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")
    if raw == xb1json.dumps(value):
        assert xb1json.loads_canonical(raw) == value
    else:
        with pytest.raises(NotCanonical):
            xb1json.loads_canonical(raw)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_either_parse_canonically_or_raise_wire_format_error(raw: bytes) -> None:
    try:
        value = xb1json.loads_canonical(raw)
    except WireFormatError as e:
        assert e.code in ("malformed", "not-canonical")
    else:
        assert xb1json.dumps(value) == raw


@given(json_values, st.data())
def test_flipping_one_byte_never_yields_a_different_accepted_reading(
    value: Any, data: st.DataObject
) -> None:
    raw = bytearray(xb1json.dumps(value))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] ^= data.draw(st.integers(1, 255))
    try:
        parsed = xb1json.loads_canonical(bytes(raw))
    except WireFormatError:
        return
    # Still canonical: it must be the canonical form of what it now says.
    assert xb1json.dumps(parsed) == bytes(raw)


# --- what dumps refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        {"a": [0.0]},
        float("nan"),
        2**53,
        -(2**53),
        {"ключ": 1},
        {1: "non-string key"},
        "\ud800",
        {"a": "x\udc00"},
        b"bytes",
        {"a": {1, 2}},
    ],
    ids=repr,
)
def test_dumps_refuses_values_outside_xb1_json(value: Any) -> None:
    with pytest.raises(WireFormatError) as caught:
        xb1json.dumps(value)
    assert caught.value.code == "malformed"


def test_limits_of_safe_integers_are_accepted() -> None:
    for n in (xb1json.MAX_SAFE_INTEGER, -xb1json.MAX_SAFE_INTEGER):
        assert xb1json.loads_canonical(xb1json.dumps(n)) == n


# --- strict parsing without the canonical check ------------------------------------


def test_loads_rejects_a_lone_surrogate_escape() -> None:
    # A receiver parses the message body with loads (PROTOCOL §3 step 7); a lone
    # surrogate must not get through to storage, where no UTF-8 encoder takes it.
    with pytest.raises(WireFormatError) as caught:
        xb1json.loads(b'{"a":"\\ud800"}')
    assert caught.value.code == "malformed"


def test_loads_accepts_whitespace_but_not_duplicates() -> None:
    assert xb1json.loads(b'{ "a" : 1 }') == {"a": 1}
    with pytest.raises(WireFormatError):
        xb1json.loads(b'{"a":1, "a":1}')


def test_loads_takes_bytes_only() -> None:
    with pytest.raises(WireFormatError):
        xb1json.loads("{}")  # type: ignore[arg-type]


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    for depth in (xb1json.MAX_DEPTH + 2, 100_000):
        with pytest.raises(WireFormatError) as caught:
            xb1json.loads(b"[" * depth + b"]" * depth)
        assert caught.value.code == "malformed"


# --- the fast path (orjson) decides as the strict path (the standard library) does --


def test_every_character_is_written_as_the_reference_writes_it() -> None:
    everything = "".join(chr(cp) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF)
    assert xb1json.dumps(everything) == _reference(everything)
    assert xb1json.dumps({"k": [everything, everything[::-1]]}) == _reference(
        {"k": [everything, everything[::-1]]}
    )


def _outcome(read: Any, raw: bytes) -> Any:
    try:
        return ("value", read(raw))
    except WireFormatError as e:
        return ("error", e.code, str(e))


def _reference_with_canonical(raw: bytes) -> Any:
    """What loads_with_canonical answers, by the strict path and the reference encoder."""
    value = xb1json._strict_loads(raw)
    return value, _reference(value) == raw


TRICKY = [
    b'{"a":1,"a":1}',  # duplicate keys in canonical order
    b'{"a":1,"a":2}',
    b"1.0",
    b"[1.0]",
    b'{"a":-0}',
    b"1E5",
    b"18446744073709551616",
    b"[1152921504606846976]",  # 2^60: an integer, out of the safe range
    b'"\\u00e9"',
    b'"\\/"',
    b'"\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\xf0\x9f\x98\x80"',
    b"\xef\xbb\xbf{}",
    b'{"\xc3\xa9":1}',  # a non-ASCII key
    b'"\xff"',
    b"[" * 70 + b"]" * 70,
    b"[" * 2000 + b"]" * 2000,
    b"NaN",
    b"[Infinity]",
    b'{"b":1,"a":2}',
    b"{}",
    b"",
    b"null",
    b'"\x7f\xe2\x80\xa8"',  # DEL and U+2028 stay unescaped
    b'"\\u007f"',
]


@pytest.mark.parametrize("raw", TRICKY)
def test_tricky_inputs_read_as_the_strict_path_reads_them(raw: bytes) -> None:
    assert _outcome(xb1json.loads, raw) == _outcome(xb1json._strict_loads, raw)
    assert _outcome(xb1json.loads_with_canonical, raw) == _outcome(_reference_with_canonical, raw)


@given(json_values, st.data())
def test_changed_canonical_bytes_read_as_the_strict_path_reads_them(
    value: Any, data: st.DataObject
) -> None:
    raw = bytearray(xb1json.dumps(value))
    for _ in range(data.draw(st.integers(0, 3))):
        position = data.draw(st.integers(0, len(raw)))
        piece = data.draw(st.sampled_from([b",", b'"', b"\\", b"1.0", b" ", b"{", b"]", b"\xff"]))
        raw[position:position] = piece
    raw = bytes(raw)
    assert _outcome(xb1json.loads, raw) == _outcome(xb1json._strict_loads, raw)
    assert _outcome(xb1json.loads_with_canonical, raw) == _outcome(_reference_with_canonical, raw)


class _ShownDict(dict):  # type: ignore[type-arg]
    """What the reference encoder writes of a dict subclass is what items() says."""

    def items(self):  # type: ignore[no-untyped-def, override]
        return [(k, v) for k, v in super().items() if k != "hidden"]


class _ShownList(list):  # type: ignore[type-arg]
    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list.__getitem__(self, slice(0, 1)))


def test_subclasses_are_written_as_the_reference_writes_them() -> None:
    for value in (
        _ShownDict(a=1, hidden=2),
        {"k": _ShownDict(a=1, hidden=2)},
        _ShownList([1, 2]),
        [_ShownList([1, 2])],
    ):
        assert xb1json.dumps(value) == _reference(value)
