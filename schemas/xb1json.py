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


def _check(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise WireFormatError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        # json.loads turns a "\ud800" escape into a lone surrogate that no UTF-8
        # encoder accepts; catch it here so loads() is as strict as dumps().
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise WireFormatError("string is not valid Unicode (lone surrogate)") from e
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise WireFormatError(f"integer {value} is outside ±(2^53-1); send it as a string")
        return
    if isinstance(value, float):
        raise WireFormatError("floats are not allowed in xb1-json; send decimals as strings")
    if isinstance(value, (list, tuple)):
        for element in value:
            _check(element, depth + 1)
        return
    if isinstance(value, dict):
        for key, element in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise WireFormatError(f"object key {key!r} must be an ASCII string")
            _check(element, depth + 1)
        return
    raise WireFormatError(f"type {type(value).__name__} cannot be encoded as xb1-json")


def dumps(value: Any) -> bytes:
    """Serialise to canonical xb1-json bytes."""
    _check(value)
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates
        raise WireFormatError("string is not valid Unicode (lone surrogate)") from e


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WireFormatError(f"duplicate object key {key!r}")
        result[key] = value
    return result


def _reject_float(text: str) -> Any:
    raise WireFormatError(f"number {text} is not an integer; xb1-json allows integers only")


def _reject_constant(text: str) -> Any:
    raise WireFormatError(f"{text} is not valid JSON")


def _parse_int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > 16:
        raise WireFormatError("integer is outside ±(2^53-1); send it as a string")
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise WireFormatError(f"integer {value} is outside ±(2^53-1); send it as a string")
    return value


def loads(raw: bytes) -> Any:
    """Parse xb1-json strictly (valid UTF-8, no duplicates, integers only)."""
    if not isinstance(raw, (bytes, bytearray)):
        raise WireFormatError("xb1-json input must be bytes")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise WireFormatError("JSON is not valid UTF-8") from e
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
        )
    except WireFormatError:
        raise
    except RecursionError as e:
        raise WireFormatError("JSON nested too deeply") from e
    except ValueError as e:
        raise WireFormatError(f"invalid JSON: {e}") from e
    _check(value)
    return value


def loads_canonical(raw: bytes) -> Any:
    """Parse strictly and require that the bytes are exactly the canonical form."""
    value = loads(raw)
    if dumps(value) != bytes(raw):
        raise NotCanonical("JSON is not in xb1 canonical form (key order, whitespace or escaping)")
    return value
