"""xb1-json: the canonical JSON of PROTOCOL §2 (a strict subset of RFC 8785 JCS).

``dumps`` refuses anything outside the subset (floats, big integers, non-ASCII
keys, non-string keys); ``loads_canonical`` parses strictly (duplicate keys,
floats, NaN and out-of-range integers are errors) and rejects bytes whose
re-serialisation differs, which is what a receiver MUST do after a signature
holds.
"""

import json
from typing import Any

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


def _check(value: Any, depth: int = 0) -> None:
    """Refuse anything outside the xb1-json subset. Exact type tests first (the hot
    path: parsed JSON only holds these), then ``isinstance`` for subclasses."""
    kind = type(value)
    if kind is str:
        _check_string(value)
    elif kind is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise WireFormatError(f"integer {value} is outside ±(2^53-1); send it as a string")
    elif kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise WireFormatError(f"JSON nested deeper than {MAX_DEPTH} levels")
        if kind is dict:
            for key, element in value.items():
                if type(key) is not str or not key.isascii():
                    raise WireFormatError(f"object key {key!r} must be an ASCII string")
                _check(element, depth + 1)
        else:
            for element in value:
                _check(element, depth + 1)
    elif value is None or kind is bool:
        pass
    elif isinstance(value, float):
        raise WireFormatError("floats are not allowed in xb1-json; send decimals as strings")
    elif isinstance(value, str):
        _check_string(value)
    elif isinstance(value, int):
        _check(int(value), depth)
    elif isinstance(value, (dict, list, tuple)):
        _check(dict(value) if isinstance(value, dict) else list(value), depth)
    else:
        raise WireFormatError(f"type {type(value).__name__} cannot be encoded as xb1-json")


def check(value: Any) -> None:
    """Raise ``WireFormatError`` unless ``value`` can be encoded as xb1-json."""
    _check(value)


_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def dumps(value: Any) -> bytes:
    """Serialise to canonical xb1-json bytes."""
    _check(value)
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates
        raise WireFormatError("string is not valid Unicode (lone surrogate)") from e


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


def loads_with_canonical(raw: bytes) -> tuple[Any, bool]:
    """Parse strictly; also say whether the bytes are exactly the canonical form."""
    value = loads(raw)  # checked: no second walk needed before encoding
    return value, _ENCODER.encode(value).encode("utf-8") == bytes(raw)


def loads_canonical(raw: bytes) -> Any:
    """Parse strictly and require that the bytes are exactly the canonical form."""
    value, canonical = loads_with_canonical(raw)
    if not canonical:
        raise NotCanonical("JSON is not in xb1 canonical form (key order, whitespace or escaping)")
    return value
