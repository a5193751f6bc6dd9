"""xb1-json: the canonical JSON of PROTOCOL §2 (a strict subset of RFC 8785 JCS).

``dumps`` refuses anything outside the subset (floats, big integers, non-ASCII
keys, non-string keys); ``loads_canonical`` parses strictly (duplicate keys,
floats, NaN and out-of-range integers are errors) and rejects bytes whose
re-serialisation differs, which is what a receiver MUST do after a signature
holds.
"""

import json
from typing import Any

import orjson

from .errors import NotCanonical, WireFormatError

MAX_SAFE_INTEGER = 2**53 - 1
MAX_DEPTH = 64


def _check_string(value: str) -> None:
    # json.loads turns a "\ud800" escape into a lone surrogate that no UTF-8
    # encoder accepts; refuse it so loads() is as strict as dumps().
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise WireFormatError("string is not valid Unicode (lone surrogate)") from e


def _check_scalar(value: Any, depth: int) -> None:
    """Everything that is not a plain str, int, dict, list, tuple, None or bool."""
    if isinstance(value, float):
        raise WireFormatError("floats are not allowed in xb1-json; send decimals as strings")
    if isinstance(value, str):
        _check_string(value)
    elif isinstance(value, int):
        _check(int(value), depth)
    elif isinstance(value, dict):
        _check(dict(value), depth)
    elif isinstance(value, (list, tuple)):
        _check(list(value), depth)
    else:
        raise WireFormatError(f"type {type(value).__name__} cannot be encoded as xb1-json")


def _check(value: Any, depth: int = 0) -> bool:
    """Refuse anything outside the xb1-json subset; return whether every value is of
    an exact built-in type (no subclass: orjson reads a subclass's own storage, where
    the reference encoder uses what its methods say, so only exact types go to orjson).

    This walk runs on every message sealed or opened, so scalars inside a
    container are checked inline (exact type tests) and only containers and
    unusual types cost a call.
    """
    exact = True
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                raise WireFormatError(f"object key {key!r} must be an ASCII string")
        elements = value.values()
    elif kind is list or kind is tuple:
        elements = value
    else:
        elements = (value,)
        depth -= 1  # a bare scalar is not a level of nesting
        # Checked below as an element; a top-level value of another type is not exact.
    if depth >= MAX_DEPTH:
        raise WireFormatError(f"JSON nested deeper than {MAX_DEPTH} levels")
    for element in elements:
        kind = type(element)
        if kind is str:
            if not element.isascii():
                _check_string(element)
        elif kind is int:
            if not -MAX_SAFE_INTEGER <= element <= MAX_SAFE_INTEGER:
                raise WireFormatError(
                    f"integer {element} is outside ±(2^53-1); send it as a string"
                )
        elif kind is dict or kind is list or kind is tuple:
            exact = _check(element, depth + 1) and exact
        elif element is None or kind is bool:
            pass
        else:
            _check_scalar(element, depth + 1)
            exact = False
    return exact


def check(value: Any) -> None:
    """Raise ``WireFormatError`` unless ``value`` can be encoded as xb1-json."""
    _check(value)


# check_circular is off because _check bounds the depth first: a cycle cannot get here.
_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    check_circular=False,
)


# orjson writes what _ENCODER writes for every value _check lets through: keys sorted
# (ASCII, so code point and byte order agree), no whitespace, UTF-8 unescaped except
# '"', '\\' and U+0000-U+001F (\b \t \n \f \r, else \u00xx), integers in decimal
# (tests/test_schemas_xb1json.py compares the two on every code point and on generated
# values). It is several times faster, and both the sender and the receiver of every
# message run it.
_SORTED = orjson.OPT_SORT_KEYS


def _encode(value: Any, exact: bool = True) -> bytes:
    """Canonical bytes of a value that ``_check`` accepted (``exact``: as it said)."""
    if exact:
        try:
            return orjson.dumps(value, option=_SORTED)
        except TypeError:  # orjson.JSONEncodeError: a type it does not take
            pass
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates
        raise WireFormatError("string is not valid Unicode (lone surrogate)") from e


def dumps(value: Any) -> bytes:
    """Serialise to canonical xb1-json bytes."""
    return _encode(value, _check(value))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise WireFormatError(f"duplicate object key {key!r}")
            seen.add(key)
    return result


def _reject_float(text: str) -> Any:
    raise WireFormatError(f"number {text} is not an integer; xb1-json allows integers only")


def _reject_constant(text: str) -> Any:
    raise WireFormatError(f"{text} is not valid JSON")


# Integers are parsed by the C scanner and range-checked by _check; Python itself
# refuses integers of more than 4300 digits, so a huge number cannot cost much.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates, parse_float=_reject_float, parse_constant=_reject_constant
)


def loads(raw: bytes) -> Any:
    """Parse xb1-json strictly (valid UTF-8, no duplicates, integers only)."""
    if type(raw) is bytes:
        value = _canonical_value(raw)
        if value is not _NOT_SHOWN:
            return value
    return _strict_loads(raw)


def _strict_loads(raw: bytes) -> Any:
    if not isinstance(raw, (bytes, bytearray)):
        raise WireFormatError("xb1-json input must be bytes")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireFormatError("JSON is not valid UTF-8") from e
    try:
        value = _DECODER.decode(text)
    except WireFormatError:
        raise
    except RecursionError as e:
        raise WireFormatError("JSON nested too deeply") from e
    except ValueError as e:
        raise WireFormatError(f"invalid JSON: {e}") from e
    _check(value)
    return value


_NOT_SHOWN = object()


def _canonical_value(raw: bytes) -> Any:
    """The value of ``raw`` if ``raw`` is canonical xb1-json, else ``_NOT_SHOWN``.

    Canonical bytes are exactly the encoding of their value, so parsing them with
    orjson (which keeps the last of duplicate keys and reads floats and huge integers
    as floats) and encoding the value again gives ``raw`` back only when there is no
    duplicate key (the encoding would be shorter), no float (an integer-valued one
    passes this, ``_check`` refuses it), no escape that re-encodes otherwise, and no
    whitespace. Anything unusual, refused by either step, is left to the strict path,
    whose decision and error are the ones that count.
    """
    try:
        value = orjson.loads(raw)
        if orjson.dumps(value, option=_SORTED) != raw:
            return _NOT_SHOWN
        _check(value)  # integer range, depth, ASCII keys, floats
    except (ValueError, TypeError, RecursionError):  # includes WireFormatError
        return _NOT_SHOWN
    return value


def loads_with_canonical(raw: bytes) -> tuple[Any, bool]:
    """Parse strictly; also say whether the bytes are exactly the canonical form."""
    if type(raw) is bytes:
        value = _canonical_value(raw)
        if value is not _NOT_SHOWN:
            return value, True
    value = _strict_loads(raw)  # checked: no second walk needed before encoding
    return value, _encode(value) == bytes(raw)


def loads_canonical(raw: bytes) -> Any:
    """Parse strictly and require that the bytes are exactly the canonical form."""
    value, canonical = loads_with_canonical(raw)
    if not canonical:
        raise NotCanonical("JSON is not in xb1 canonical form (key order, whitespace or escaping)")
    return value
