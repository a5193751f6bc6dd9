"""Language-neutral copies of the message standard, generated from the marshmallow
schemas, which stay the source:

- a JSON Schema (draft 2020-12) per message type, ``schemas/jsonschema/<type>.json``
  (``alert/1`` → ``alert-1.json``), with ``$id`` ``urn:xb1:schema:<type>``;
- the reference page ``docs/standard.md``.

``python -m schemas.export`` writes both; ``python -m schemas.export --check``
exits 1 when a checked-in copy differs from what the schemas generate.

How fields map to JSON Schema:

- every object has ``additionalProperties: false`` (``unknown = RAISE``) and
  lists its required members; optional members are omitted, never ``null``;
- ``Text``: ``minLength``/``maxLength``, at least one non-space character,
  ``not`` any control, bidi-override or surrogate character; ``LatinText``
  adds a character class computed from the Unicode database the schemas use;
- ``Code`` and its subclasses (country, language): ``enum``;
- ``PatternText`` and its subclasses: an anchored ``pattern``. Patterns end in
  ``$(?!\\n)`` rather than ``$`` because in Python's ``re`` (which some
  validators use) ``$`` also matches before a final newline;
- integers: ``type: integer`` with ``minimum``/``maximum`` or ``enum``;
- cross-field rules: each schema's ``json_schema_rules`` (``if``/``then``
  subschemas under ``allOf``); rules JSON Schema cannot state are listed in
  the object's ``description`` (``rules_beyond_json_schema``).

Known differences, stated in every exported root description: JSON Schema
counts 1.0 as an integer (xb1-json parsers refuse floats before validation,
PROTOCOL §2), and a partial date's pattern does not check the calendar
(2025-02-30 passes the pattern, not the marshmallow schema).
"""

import argparse
import inspect
import json
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from marshmallow import Schema, fields, validate

from . import (
    alert,
    case_request,
    case_response,
    common,
    correction,
    grant,
    hit_answer,
    hit_query,
    referral,
)
from .registry import MESSAGE_TYPES

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
PACKAGE_DIR = Path(__file__).resolve().parent
JSON_SCHEMA_DIR = PACKAGE_DIR / "jsonschema"
REFERENCE_PAGE = PACKAGE_DIR.parent / "docs" / "standard.md"

_KNOWN_DIFFERENCES = (
    "JSON Schema counts 1.0 as an integer; xb1-json refuses floats before validation "
    "(PROTOCOL §2).",
    "A partial date's pattern does not check the calendar: 2025-02-30 is refused by the "
    "marshmallow schema only.",
)

#: Vocabularies with descriptions, shown as code lists on the reference page.
CODE_LISTS: Mapping[str, Mapping[str, str]] = {
    "Handling codes": common.HANDLING_CODES,
    "Legal instruments": common.LEGAL_INSTRUMENTS,
    "ICAO 9303 document types": common.DOCUMENT_TYPES,
    "Document statuses": common.DOCUMENT_STATUSES,
    "Identity kinds": common.IDENTITY_KINDS,
    "Organisation types": common.ORGANISATION_TYPES,
    "Account types": common.ACCOUNT_TYPES,
    "Event types": common.EVENT_TYPES,
    "Link types": common.LINK_TYPES,
    "Agency types": common.AGENCY_TYPES,
    "Consent scopes": referral.CONSENT_SCOPES,
    "Assistance areas": referral.ASSISTANCE_AREAS,
    "Risk factors": referral.RISK_FACTORS,
    "Offences": case_request.OFFENCES,
    "Data categories": case_request.DATA_CATEGORIES,
    "Refusal grounds": case_response.REFUSAL_GROUNDS,
    "Correction reasons": correction.REASON_CODES,
}

_TYPE_MODULES: Mapping[str, ModuleType] = {
    "alert/1": alert,
    "referral/1": referral,
    "case-request/1": case_request,
    "case-response/1": case_response,
    "hit-query/1": hit_query,
    "hit-answer/1": hit_answer,
    "correction/1": correction,
    "grant/1": grant,
}


def file_name(typ: str) -> str:
    """``alert/1`` → ``alert-1.json``."""
    return typ.replace("/", "-") + ".json"


def schema_id(typ: str) -> str:
    return f"urn:xb1:schema:{typ}"


def def_name(schema_class: type[Schema]) -> str:
    name = schema_class.__name__
    return name.removesuffix("Schema") or name


def _anchored(regex: str) -> str:
    return f"^(?:{regex})$(?!\\n)"


# --- characters --------------------------------------------------------------------


def _class_of(predicate: Any) -> str:
    """A regex character class of every code point satisfying ``predicate``, written with
    literal characters (escapes for astral code points differ between regex dialects)."""
    ranges: list[list[int]] = []
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF or not predicate(chr(code)):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])

    def literal(code: int) -> str:
        ch = chr(code)
        return "\\" + ch if ch in "\\]-[^" else ch

    parts = [literal(lo) if lo == hi else f"{literal(lo)}-{literal(hi)}" for lo, hi in ranges]
    return "[" + "".join(parts) + "]"


@cache
def _latin_patterns() -> tuple[str, str]:
    allowed = _class_of(common.LatinText._is_allowed)
    letter = _class_of(common.LatinText._is_latin_letter)
    return f"^{allowed}*$(?!\\n)", letter


# --- fields ------------------------------------------------------------------------


def _description(field: fields.Field[Any]) -> dict[str, str]:
    text = field.metadata.get("description")
    return {"description": text} if text else {}


def field_schema(field: fields.Field[Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one marshmallow field; nested schemas are added to ``defs``."""
    result = {**_field_schema(field, defs), **_description(field)}
    return result


def _field_schema(field: fields.Field[Any], defs: dict[str, Any]) -> dict[str, Any]:
    if isinstance(field, common.StrictList):
        return {
            "type": "array",
            "minItems": field.min_items,
            "maxItems": field.max_items,
            "items": field_schema(field.inner, defs),
        }
    if isinstance(field, fields.Nested):
        nested = field.nested
        assert isinstance(nested, type) and issubclass(nested, Schema)  # noqa: S101
        name = def_name(nested)
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = object_schema(nested, defs)
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(field, common.Text):
        constraints: list[dict[str, Any]] = [{"pattern": "\\S"}]
        if isinstance(field, common.LatinText):
            allowed, letter = _latin_patterns()
            constraints += [{"pattern": allowed}, {"pattern": letter}]
        result: dict[str, Any] = {
            "type": "string",
            "minLength": field.min_length,
            "maxLength": field.max_length,
            "not": {"pattern": field._forbidden.pattern},
        }
        if len(constraints) == 1:
            result.update(constraints[0])
        else:
            result["allOf"] = constraints
        return result
    if isinstance(field, common.Country | common.Language):
        name = "CountryCode" if isinstance(field, common.Country) else "LanguageCode"
        defs.setdefault(name, {"type": "string", "enum": sorted(field.choices)})
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(field, common.Code):
        choices = field.choices
        listed = field._listed.split(", ") if field._listed else sorted(choices)
        return {"type": "string", "enum": listed}
    if isinstance(field, common.PatternText):
        return {
            "type": "string",
            "maxLength": field.max_length,
            "pattern": _anchored(field.pattern.pattern),
        }
    if isinstance(field, common.PartialDate):
        day = "(?:0[1-9]|[12][0-9]|3[01])"
        return {
            "type": "string",
            "pattern": _anchored(f"(?!0000)[0-9]{{4}}(?:-(?:0[1-9]|1[0-2])(?:-{day})?)?"),
        }
    if isinstance(field, fields.Integer):
        result = {"type": "integer"}
        for validator in field.validators:
            if isinstance(validator, validate.Range):
                result["minimum"] = validator.min
                result["maximum"] = validator.max
            elif isinstance(validator, validate.OneOf):
                result["enum"] = list(validator.choices)
            else:
                raise TypeError(f"no JSON Schema for validator {validator!r}")
        return result
    if isinstance(field, correction.JsonObject):
        return {"type": "object"}
    raise TypeError(f"no JSON Schema for field type {type(field).__name__}")


def ordered_fields(schema_class: type[Schema]) -> dict[str, fields.Field[Any]]:
    """The fields of a schema, those the class declares itself first, then those of its
    bases in method resolution order (so a message type's own members lead)."""
    all_fields = schema_class().fields
    names: list[str] = []
    for klass in schema_class.__mro__:
        declared = getattr(klass, "_declared_fields", {})
        inherited = set().union(
            *(getattr(base, "_declared_fields", {}) for base in klass.__bases__)
        )
        names += [name for name in declared if name not in inherited and name not in names]
    return {name: all_fields[name] for name in names}


def _own(schema_class: type[Schema], attribute: str) -> Iterator[Any]:
    """The values of ``attribute`` each class of the hierarchy defines itself, base first."""
    seen: set[str] = set()
    for klass in reversed(schema_class.__mro__):
        for value in klass.__dict__.get(attribute, ()):
            key = json.dumps(value, sort_keys=True)
            if key not in seen:
                seen.add(key)
                yield value


def rules_beyond(schema_class: type[Schema]) -> list[str]:
    return list(_own(schema_class, "rules_beyond_json_schema"))


def object_schema(schema_class: type[Schema], defs: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of a marshmallow schema class (its nested schemas go to ``defs``)."""
    members = ordered_fields(schema_class)
    description = inspect.cleandoc(schema_class.__doc__ or "")
    beyond = rules_beyond(schema_class)
    if beyond:
        description += "\n\nRules not expressed in this JSON Schema:\n" + "\n".join(
            f"- {rule}" for rule in beyond
        )
    result: dict[str, Any] = {
        "description": description,
        "type": "object",
        "properties": {name: field_schema(field, defs) for name, field in members.items()},
        "required": [name for name, field in members.items() if field.required],
        "additionalProperties": False,
    }
    rules = list(_own(schema_class, "json_schema_rules"))
    if rules:
        result["allOf"] = rules
    return result


def message_json_schema(typ: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the body of message type ``typ``."""
    defs: dict[str, Any] = {}
    root = object_schema(MESSAGE_TYPES[typ], defs)
    module_doc = inspect.cleandoc(_TYPE_MODULES[typ].__doc__ or "")
    root["description"] = (
        module_doc
        + "\n\n"
        + root["description"]
        + "\n\nKnown differences from the marshmallow schema:\n"
        + "\n".join(f"- {d}" for d in _KNOWN_DIFFERENCES)
    )
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(typ),
        "title": f"xb1 {typ} message body",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def render_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


# --- reference page -------------------------------------------------------------------


def _anchor(title: str) -> str:
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return kept.replace(" ", "-")


_CODE_LIST_TITLES = {frozenset(codes): title for title, codes in CODE_LISTS.items()}


def _type_text(field: fields.Field[Any]) -> str:
    if isinstance(field, common.StrictList):
        return f"list of {_type_text(field.inner)} ({field.min_items}–{field.max_items})"
    if isinstance(field, fields.Nested):
        name = def_name(field.nested)  # type: ignore[arg-type]
        return f"[{name}](#{_anchor(name)})"
    if isinstance(field, common.LatinText):
        return f"Latin text ≤ {field.max_length}"
    if isinstance(field, common.Text):
        lines = "multi-line text" if field._forbidden is common.FORBIDDEN_MULTI_LINE else "text"
        return f"{lines} ≤ {field.max_length}"
    if isinstance(field, common.Country):
        return "country (ISO 3166-1 alpha-2)"
    if isinstance(field, common.Language):
        return "language (ISO 639-1)"
    if isinstance(field, common.Code):
        return "code"
    if isinstance(field, common.Script):
        return "script (ISO 15924)"
    if isinstance(field, common.LocalId):
        return "local id"
    if isinstance(field, common.MessageRef):
        return "message id (UUID)"
    if isinstance(field, common.PatternText):
        return f"string `{field.pattern.pattern}`"
    if isinstance(field, common.PartialDate):
        return "partial date (YYYY, YYYY-MM, YYYY-MM-DD)"
    if isinstance(field, common.UnixTime):
        return "Unix time (seconds)"
    if isinstance(field, fields.Integer):
        return "integer"
    if isinstance(field, correction.JsonObject):
        return "object"
    raise TypeError(f"no text for field type {type(field).__name__}")


def _allowed_text(field: fields.Field[Any]) -> str:
    if isinstance(field, common.StrictList):
        return _allowed_text(field.inner)
    if isinstance(field, common.Code) and not isinstance(field, common.Country | common.Language):
        title = _CODE_LIST_TITLES.get(field.choices)
        if title:
            return f"[{title}](#{_anchor(title)})"
        return ", ".join(f"`{code}`" for code in field._listed.split(", "))
    if isinstance(field, fields.Integer):
        for validator in field.validators:
            if isinstance(validator, validate.Range):
                return f"{validator.min}–{validator.max}"
            if isinstance(validator, validate.OneOf):
                return ", ".join(f"`{code}`" for code in validator.choices)
    return ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _markdown_doc(text: str) -> str:
    """A docstring as Markdown: ``code`` → `code`, reST tables kept as preformatted text."""
    lines = inspect.cleandoc(text).replace("``", "`").splitlines()
    out: list[str] = []
    in_table = False
    borders = 0
    for line in lines:
        is_border = bool(line.strip()) and set(line.strip()) <= {"=", " "}
        if is_border and not in_table:
            out.append("```text")
            in_table, borders = True, 0
        out.append(line)
        if is_border and in_table:
            borders += 1
            if borders == 3:
                out.append("```")
                in_table = False
    return "\n".join(out)


def _members_table(schema_class: type[Schema]) -> list[str]:
    rows = [
        "| member | type | required | allowed | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in ordered_fields(schema_class).items():
        rows.append(
            "| "
            + " | ".join(
                [
                    f"`{name}`",
                    _cell(_type_text(field)),
                    "yes" if field.required else "",
                    _cell(_allowed_text(field)),
                    _cell(field.metadata.get("description", "")),
                ]
            )
            + " |"
        )
    return rows


def _rules_lines(schema_class: type[Schema]) -> list[str]:
    rules = rules_beyond(schema_class)
    if not rules:
        return []
    return ["", "Rules only the marshmallow schema checks:", ""] + [f"- {r}" for r in rules]


def _parts(schema_class: type[Schema], found: dict[str, type[Schema]]) -> None:
    for field in schema_class().fields.values():
        inner = field
        while isinstance(inner, fields.List):
            inner = inner.inner
        if isinstance(inner, fields.Nested):
            nested = inner.nested
            assert isinstance(nested, type) and issubclass(nested, Schema)  # noqa: S101
            if def_name(nested) not in found:
                found[def_name(nested)] = nested
                _parts(nested, found)


def reference_page() -> str:
    """The Markdown reference page of the whole standard."""
    out = [
        "# The xb1 message standard (reference)",
        "",
        "Generated by `python -m schemas.export` from the marshmallow schemas in `schemas/`,",
        "which are the source; do not edit by hand. JSON Schemas (draft 2020-12) of every",
        "message body are in `schemas/jsonschema/`. The envelope, signatures and encryption",
        "are specified in `schemas/PROTOCOL.md`; the envelope's `typ` names one of the",
        "message types below and its payload is the message body.",
        "",
        "Validating without Python: load every file of `schemas/jsonschema/` into the",
        "validator's schema registry (`correction-1.json` refers to the others by `$id`,",
        "`urn:xb1:schema:<type>`). The JSON Schemas accept every valid body; each file's",
        "description lists the few rules they cannot state (references between local ids,",
        "order of dates and times, IBAN check digits, the calendar), so a body they accept",
        "may still be refused by a node for one of those.",
        "",
        "Common to all members: unknown members are refused; optional members are omitted,",
        "never `null`; lists, when present, are not empty; text has no control or",
        'bidi-override characters; integers are JSON integers, never `1.0` or `"1"`.',
        "",
        "## Message types",
        "",
    ]
    out += [f"- [`{typ}`](#{_anchor(typ)})" for typ in MESSAGE_TYPES]
    parts: dict[str, type[Schema]] = {}
    for typ, schema_class in MESSAGE_TYPES.items():
        out += ["", f"## {typ}", "", _markdown_doc(_TYPE_MODULES[typ].__doc__ or ""), ""]
        out += _members_table(schema_class)
        out += _rules_lines(schema_class)
        _parts(schema_class, parts)
    out += ["", "## Parts and entities", ""]
    for name in sorted(parts):
        schema_class = parts[name]
        out += [f"### {name}", "", _markdown_doc(schema_class.__doc__ or ""), ""]
        out += _members_table(schema_class)
        out += _rules_lines(schema_class)
        out.append("")
    out += ["## Code lists", ""]
    for title, codes in CODE_LISTS.items():
        out += [f"### {title}", "", "| code | meaning |", "|---|---|"]
        out += [f"| `{code}` | {_cell(meaning)} |" for code, meaning in codes.items()]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# --- files -------------------------------------------------------------------------


def generated_files() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        JSON_SCHEMA_DIR / file_name(typ): render_json(message_json_schema(typ))
        for typ in MESSAGE_TYPES
    }
    files[REFERENCE_PAGE] = reference_page()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    stale = []
    for path, content in generated_files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
    for path in stale:
        print(("stale: " if args.check else "wrote: ") + str(path))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
