"""Generate ``xb1-json.json``: test vectors for canonical JSON (PROTOCOL §2).

Standard library only, deterministic. Run from anywhere::

    python schemas/vectors/make_json_vectors.py          # rewrite the file
    python schemas/vectors/make_json_vectors.py --check  # exit 1 if it is stale

Each case is ``{"name", "input" | "input_b64", "expect", "value"?}``:

- ``input`` is the exact document as text (its UTF-8 encoding is the bytes to
  parse); ``input_b64`` is base64url without padding of bytes that are not
  valid UTF-8.
- ``expect`` is ``ok``, ``malformed`` or ``not-canonical``: the rejection code
  a conforming receiver gives (PROTOCOL §3), or ``ok``.
- ``value`` (only when ``ok``) is the parsed value.

The expectations are written by hand below. As a guard against typos the
script checks them with the reference formula of PROTOCOL §2, ``json.dumps(v,
sort_keys=True, separators=(",", ":"), ensure_ascii=False)``: an ``ok`` input
must be exactly that serialisation of its value, and a ``not-canonical`` input
must parse (strictly) to a value whose serialisation differs.
"""

import base64
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("xb1-json.json")
MAX_SAFE_INTEGER = 2**53 - 1

OK, MALFORMED, NOT_CANONICAL = "ok", "malformed", "not-canonical"

# (name, document as str or as bytes when it is not valid UTF-8, expectation)
CASES: list[tuple[str, str | bytes, str]] = [
    # --- canonical documents ------------------------------------------------
    ("empty-object", "{}", OK),
    ("empty-array", "[]", OK),
    ("top-level-string", '"xb1"', OK),
    ("top-level-integer", "0", OK),
    ("literals", '{"f":false,"n":null,"t":true}', OK),
    ("keys-sorted", '{"a":1,"b":2,"c":3}', OK),
    ("keys-sorted-by-code-point", '{"A":1,"Z":2,"_":3,"a":4,"z":5}', OK),
    ("keys-prefix-sorts-first", '{"a":1,"aa":2,"ab":3,"b":4}', OK),
    ("keys-digits-before-letters", '{"1":1,"10":2,"2":3,"a":4}', OK),
    ("nested-objects", '{"a":{"b":[1,{"c":null,"d":true}],"e":false},"f":{"g":{"h":"i"}}}', OK),
    ("array-order-kept", "[3,1,2]", OK),
    ("integer-max-safe", "9007199254740991", OK),
    ("integer-min-safe", "-9007199254740991", OK),
    ("integer-negative", "-42", OK),
    ("escape-newline", '"a\\nb"', OK),
    ("escape-short-forms", '"\\b\\f\\n\\r\\t"', OK),
    ("escape-control-u0001-lowercase", '"\\u0001"', OK),
    ("escape-control-u001f-lowercase", '"\\u001f"', OK),
    ("escape-control-u000b-lowercase", '"\\u000b"', OK),
    ("escape-quote", '"say \\"hi\\""', OK),
    ("escape-backslash", '"a\\\\b"', OK),
    ("solidus-literal", '"a/b"', OK),
    ("non-ascii-literal-cyrillic", '{"name":"Айгерим Нурланова"}', OK),
    ("non-ascii-literal-arabic", '"دبي"', OK),
    ("non-ascii-literal-astral", '"\U0001f600"', OK),
    ("u2028-literal", '"a\u2028b\u2029c"', OK),
    ("del-literal", '"a\x7fb"', OK),
    ("c1-control-literal", '"a\x85b"', OK),
    # --- parse, but are not the canonical bytes -------------------------------
    ("whitespace-after-colon", '{"a": 1}', NOT_CANONICAL),
    ("whitespace-after-comma", "[1, 2]", NOT_CANONICAL),
    ("whitespace-leading", ' {"a":1}', NOT_CANONICAL),
    ("whitespace-trailing-newline", '{"a":1}\n', NOT_CANONICAL),
    ("whitespace-pretty-printed", '{\n  "a": 1\n}', NOT_CANONICAL),
    ("keys-unsorted", '{"b":1,"a":2}', NOT_CANONICAL),
    ("keys-unsorted-nested", '{"a":{"d":1,"c":2}}', NOT_CANONICAL),
    ("keys-case-insensitive-order", '{"a":1,"B":2}', NOT_CANONICAL),
    ("escape-uppercase-hex", '"\\u001F"', NOT_CANONICAL),
    ("escape-solidus", '"a\\/b"', NOT_CANONICAL),
    ("escape-control-long-form-for-newline", '"\\u000a"', NOT_CANONICAL),
    ("escape-printable-ascii", '"\\u0041"', NOT_CANONICAL),
    ("escape-non-ascii", '"\\u0416"', NOT_CANONICAL),
    ("escape-u2028", '"\\u2028"', NOT_CANONICAL),
    ("escape-del", '"\\u007f"', NOT_CANONICAL),
    ("escape-surrogate-pair", '"\\ud83d\\ude00"', NOT_CANONICAL),
    ("negative-zero", "-0", NOT_CANONICAL),
    # --- not xb1-json at all ------------------------------------------------------
    ("empty-input", "", MALFORMED),
    ("float", "1.5", MALFORMED),
    ("float-integral", "1.0", MALFORMED),
    ("float-in-object", '{"a":0.1}', MALFORMED),
    ("exponent", "1e3", MALFORMED),
    ("exponent-uppercase", "1E3", MALFORMED),
    ("exponent-negative", "-1e-3", MALFORMED),
    ("integer-2-pow-53", "9007199254740992", MALFORMED),
    ("integer-minus-2-pow-53", "-9007199254740992", MALFORMED),
    ("integer-huge", "100000000000000000000000", MALFORMED),
    ("integer-leading-zero", "01", MALFORMED),
    ("integer-plus-sign", "+1", MALFORMED),
    ("duplicate-key", '{"a":1,"a":1}', MALFORMED),
    ("duplicate-key-nested", '{"a":{"b":1,"b":2}}', MALFORMED),
    ("nan", "NaN", MALFORMED),
    ("infinity", '{"a":Infinity}', MALFORMED),
    ("minus-infinity", "-Infinity", MALFORMED),
    ("invalid-utf8-byte-ff", b'"\xff"', MALFORMED),
    ("invalid-utf8-overlong-solidus", b'"\xc0\xaf"', MALFORMED),
    ("invalid-utf8-encoded-surrogate", b'"\xed\xa0\x80"', MALFORMED),
    ("invalid-utf8-truncated", b'"\xd0"', MALFORMED),
    ("byte-order-mark", "\ufeff{}", MALFORMED),
    ("lone-high-surrogate-escape", '"\\ud800"', MALFORMED),
    ("lone-low-surrogate-escape", '"\\udc00"', MALFORMED),
    ("reversed-surrogate-pair-escape", '"\\ude00\\ud83d"', MALFORMED),
    ("trailing-data-object", "{}{}", MALFORMED),
    ("trailing-data-garbage", '{"a":1}x', MALFORMED),
    ("trailing-comma", "[1,2,]", MALFORMED),
    ("single-quotes", "{'a':1}", MALFORMED),
    ("unquoted-key", "{a:1}", MALFORMED),
    ("control-character-unescaped", '"a\x01b"', MALFORMED),
    ("tab-unescaped", '"a\tb"', MALFORMED),
    ("non-ascii-key", '{"ключ":1}', MALFORMED),
    ("unterminated-string", '"abc', MALFORMED),
]


def _reference_dumps(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _check_expectation(name: str, document: str | bytes, expect: str) -> Any:
    """Cross-check the hand-written expectation; return the value for ``ok`` cases."""
    if expect == MALFORMED:
        return None
    assert isinstance(document, str), name
    value = json.loads(document, object_pairs_hook=_no_duplicates)
    if expect == OK:
        assert _reference_dumps(value) == document, f"{name}: not canonical"
        return value
    assert _reference_dumps(value) != document, f"{name}: is canonical"
    return None


def build_cases() -> list[dict[str, Any]]:
    names = [name for name, _, _ in CASES]
    assert len(set(names)) == len(names), "case names must be unique"
    cases = []
    for name, document, expect in CASES:
        case: dict[str, Any] = {"name": name, "expect": expect}
        if isinstance(document, bytes):
            case["input_b64"] = base64.urlsafe_b64encode(document).rstrip(b"=").decode("ascii")
        else:
            document.encode("utf-8")  # must be representable as UTF-8 text
            case["input"] = document
        value = _check_expectation(name, document, expect)
        if expect == OK:
            case["value"] = value
        cases.append(case)
    return cases


def render() -> str:
    # ensure_ascii so that control characters, U+2028 and the like are
    # visible escapes in the vector file itself.
    return json.dumps(build_cases(), indent=2, sort_keys=True, ensure_ascii=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
