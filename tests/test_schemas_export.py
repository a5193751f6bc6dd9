"""The language-neutral copies of the standard: JSON Schemas (draft 2020-12) and the
reference page, generated from the marshmallow schemas by ``schemas.export``.

The JSON Schemas must accept every valid body (a message valid here must not be
refused by a validator abroad) and refuse every invalid one whose rule JSON
Schema can express; the rules it cannot express are listed exactly below.
"""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from schemas import export
from schemas.errors import SchemaInvalid
from schemas.examples import (
    example_alert,
    example_alert_kyrgyz_network,
    example_alert_tajik_cyrillic,
    example_case_request,
    example_correction,
    example_hit_answer,
    example_referral,
    example_withdrawal,
)
from schemas.registry import MESSAGE_TYPES, validate_body
from tests.test_schemas_standard import (
    ALL_EXAMPLES,
    BAD_FIELDS,
    EXAMPLE_IDS,
    REFERRAL_CHANGES,
    RESPONSES_BAD,
    Make,
    leaf_paths,
    set_at,
)

CHECKED_IN = {
    typ: json.loads((export.JSON_SCHEMA_DIR / export.file_name(typ)).read_text(encoding="utf-8"))
    for typ in MESSAGE_TYPES
}
REGISTRY = Registry().with_resources(
    [(document["$id"], Resource.from_contents(document)) for document in CHECKED_IN.values()]
)
VALIDATORS = {
    typ: Draft202012Validator(document, registry=REGISTRY) for typ, document in CHECKED_IN.items()
}


def json_schema_accepts(typ: str, body: Any) -> bool:
    return VALIDATORS[typ].is_valid(body)


def marshmallow_accepts(typ: str, body: Any) -> bool:
    try:
        validate_body(typ, body)
    except SchemaInvalid:
        return False
    return True


def typ_of(make: Make) -> str:
    return next(typ for typ, _, m in ALL_EXAMPLES if m is make)


# --- the checked-in copies ------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(export.generated_files()), ids=lambda p: p.name)
def test_checked_in_copy_is_in_sync(path: Path) -> None:
    expected = export.generated_files()[path]
    assert path.exists(), f"{path} is missing: run python -m schemas.export"
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path} is out of date: run python -m schemas.export"
    )


def test_check_mode_finds_a_stale_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "JSON_SCHEMA_DIR", tmp_path / "jsonschema")
    monkeypatch.setattr(export, "REFERENCE_PAGE", tmp_path / "docs" / "standard.md")
    assert export.main(["--check"]) == 1
    assert export.main([]) == 0
    assert export.main(["--check"]) == 0
    stale = tmp_path / "jsonschema" / "alert-1.json"
    stale.write_text(stale.read_text(encoding="utf-8").replace('"H3"', '"H4"'), encoding="utf-8")
    assert export.main(["--check"]) == 1


@pytest.mark.parametrize("typ", sorted(MESSAGE_TYPES))
def test_exported_schema_is_draft_2020_12(typ: str) -> None:
    document = CHECKED_IN[typ]
    Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$id"] == f"urn:xb1:schema:{typ}"
    assert document["additionalProperties"] is False
    for name, definition in document["$defs"].items():
        if definition.get("type") == "object":
            assert definition["additionalProperties"] is False, name


def test_required_members_match() -> None:
    for typ, schema_class in MESSAGE_TYPES.items():
        required = {name for name, field in schema_class().fields.items() if field.required}
        assert set(CHECKED_IN[typ]["required"]) == required, typ


# --- agreement with the marshmallow schemas ----------------------------------------------


@pytest.mark.parametrize(("typ", "name", "make"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_example_is_valid_against_its_json_schema(typ: str, name: str, make: Make) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATORS[typ].iter_errors(make())]
    assert errors == []


#: Rules JSON Schema cannot express (each is listed in the exported descriptions):
#: local references, order of dates and times, IBAN check digits, the calendar.
JSON_SCHEMA_GAPS = {
    ("example_alert_kyrgyz_network", ("accounts", 1, "iban"), "KZ85722C000012345678"),
    ("example_alert_kyrgyz_network", ("events", 0, "involved", 0), "p9"),
    ("example_alert_kyrgyz_network", ("events", 0, "locations", 0), "p1"),
    ("example_alert_kyrgyz_network", ("events", 0, "involved", 0), "e2"),
    ("example_alert_kyrgyz_network", ("links", 0, "target"), "nobody"),
    ("example_alert_kyrgyz_network", ("links", 0, "source"), "zz"),
    ("example_referral", ("capacity_request", "respond_by"), 1_742_457_600),
    ("example_referral", ("handover", "planned_at"), 1_742_400_000),
    ("example_case_request", ("data_sought", 0, "concerning", 0), "p7"),
    ("example_case_request", ("data_sought", 1, "period_end"), "2024-08"),
    ("example_case_request", ("deadline",), 1_742_536_800),
    ("example_case_request_immediate", ("deadline",), 1_742_536_800 + 73 * 3600),
    ("example_case_response", ("expected_by",), 1_742_536_800),
    ("example_case_response", ("provided", "events", 0, "involved", 1), "d9"),
    ("example_correction", ("body", "subjects", 0, "date_of_birth"), "2001-02-30"),
}


_GAP_KEYS = [(name, path, value) for name, path, value in JSON_SCHEMA_GAPS]


@pytest.mark.parametrize(
    ("make", "path", "value"),
    BAD_FIELDS,
    ids=[f"{m.__name__}:{'.'.join(map(str, p))}={v!r:.20}" for m, p, v in BAD_FIELDS],
)
def test_bad_field_is_refused_by_both(make: Make, path: tuple, value: Any) -> None:
    typ = typ_of(make)
    body = set_at(make(), path, value)
    assert not marshmallow_accepts(typ, body)
    if (make.__name__, path, value) in _GAP_KEYS:
        assert json_schema_accepts(typ, body), "now expressible: remove it from the gaps"
    else:
        assert not json_schema_accepts(typ, body)


def test_gaps_are_bad_fields() -> None:
    listed = {(m.__name__, p, v) for m, p, v in BAD_FIELDS if isinstance(v, str | int)}
    assert JSON_SCHEMA_GAPS <= listed


def _without(body: dict[str, Any], *members: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in members}


CROSS_FIELD_BAD: list[tuple[str, dict[str, Any]]] = [
    ("alert/1", _without(example_alert_tajik_cyrillic(), "sought_for")),
    ("alert/1", example_alert(sought_for="arrest")),
    ("alert/1", _without(example_alert(kind="recruitment-channel"), "channels")),
    ("alert/1", _without(example_alert(), "subjects")),
    ("alert/1", example_alert_tajik_cyrillic(subjects=example_alert()["subjects"][:1])),
    ("alert/1", example_alert(handling={"code": "H3"})),
    ("alert/1", example_alert(tlp="CLEAR")),
    ("alert/1", example_alert(channels=[{"type": "phone", "value": "87000000000"}])),
    ("alert/1", example_alert(channels=[{"type": "messenger", "value": "@x"}])),
    ("alert/1", example_alert(channels=[{"type": "email", "value": "x at example.com"}])),
    ("alert/1", example_alert(channels=[{"type": "website", "value": "ftp://example.com"}])),
    (
        "alert/1",
        example_alert(channels=[{"type": "website", "value": "https://example.com/a job"}]),
    ),
    (
        "alert/1",
        example_alert(channels=[{"type": "messenger", "platform": "telegram\n", "value": "@x"}]),
    ),
    ("alert/1", example_alert(title="Trafficked\n")),
    ("alert/1", example_alert(title="   ")),
    ("alert/1", example_alert(legal_basis={"instrument": "Palermo protocol"})),
    ("alert/1", example_alert(legal_basis={"instrument": "national:XK:criminal-code"})),
    ("alert/1", example_alert(legal_basis={"instrument": "bilateral:KZ-SU:1993"})),
    ("alert/1", set_at(example_alert(), ("subjects", 0, "names", 0, "latin"), "Айгерим")),
    ("alert/1", set_at(example_alert(), ("subjects", 0, "names", 0, "latin"), "Aigerim\n")),
    ("alert/1", set_at(example_alert(), ("subjects", 0, "date_of_birth"), "2001-07\n")),
    ("alert/1", set_at(example_alert(), ("subjects", 0, "date_of_birth"), "0000")),
    (
        "alert/1",
        set_at(example_alert_kyrgyz_network(), ("vehicles", 0), {"type": "car", "colour": "red"}),
    ),
    ("alert/1", set_at(example_alert_kyrgyz_network(), ("accounts", 0, "network"), "tron")),
    ("referral/1", set_at(example_referral(), ("victim", "category"), "suspect")),
    ("referral/1", _without(example_referral(), "handover")),
    ("referral/1", set_at(example_referral(), ("consent", "scope"), ["documents"])),
    ("referral/1", set_at(example_referral(), ("consent", "scope"), ["identity", "identity"])),
    ("case-request/1", _without(example_case_request(), "urgent_reason")),
    ("case-request/1", set_at(example_case_request(), ("data_sought", 0), {"category": "other"})),
    ("hit-answer/1", _without(example_hit_answer(), "in_reply_to")),
    ("hit-answer/1", set_at(example_hit_answer(), ("results", 1, "reference"), "KZ-1")),
    ("correction/1", _without(example_correction(), "body")),
    ("correction/1", example_correction(refers_to_type="referral/1")),
    ("correction/1", set_at(example_correction(), ("body", "tlp"), "WHITE")),
    ("correction/1", example_withdrawal(body=example_referral())),
] + [("case-response/1", body) for body, _ in RESPONSES_BAD]
#: Referral rules JSON Schema cannot state: values compared with other values.
REFERRAL_GAPS = {("receiving_agency", "type"), ("purpose",)}


def _changed_referral(change: Any) -> dict[str, Any]:
    body = example_referral()
    change(body)
    return body


@pytest.mark.parametrize(
    ("change", "path"),
    REFERRAL_CHANGES,
    ids=[f"{i}-{'.'.join(map(str, p))}" for i, (_, p) in enumerate(REFERRAL_CHANGES)],
)
def test_referral_consent_rules_agree(change: Any, path: tuple) -> None:
    body = _changed_referral(change)
    accepted = marshmallow_accepts("referral/1", body)
    assert accepted == (path == ())
    if path in REFERRAL_GAPS:
        assert json_schema_accepts("referral/1", body), "now expressible: update the gaps"
    else:
        assert json_schema_accepts("referral/1", body) == accepted


def test_withdrawal_notice_agrees() -> None:
    body = example_referral()
    body["consent"]["withdrawn_at"] = body["consent"]["given_at"] + 86_400
    assert not marshmallow_accepts("referral/1", body)
    assert not json_schema_accepts("referral/1", body)
    for member in [m for m in body if m not in _NOTICE_MEMBERS]:
        del body[member]
    assert not json_schema_accepts("referral/1", body)  # the victim's documents remain
    del body["victim"]["documents"]
    assert marshmallow_accepts("referral/1", body)
    assert json_schema_accepts("referral/1", body)


_NOTICE_MEMBERS = {
    "stage",
    "case_reference",
    "referred_at",
    "referring_agency",
    "receiving_agency",
    "victim",
    "consent",
    "purpose",
    "legal_basis",
    "handling",
    "tlp",
    "urgency",
    "retention_days",
}


@pytest.mark.parametrize(
    ("typ", "body"),
    CROSS_FIELD_BAD,
    ids=[f"{i}-{typ}" for i, (typ, _) in enumerate(CROSS_FIELD_BAD)],
)
def test_cross_field_rule_is_refused_by_both(typ: str, body: dict[str, Any]) -> None:
    assert not marshmallow_accepts(typ, body)
    assert not json_schema_accepts(typ, body)


# A valid message must never be refused abroad: wherever marshmallow accepts a
# changed example, the JSON Schema accepts it too.
LEAVES = [(typ, make, path) for typ, _, make in ALL_EXAMPLES for path in leaf_paths(make())]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES), json_values | st.sampled_from(["p1", "l1", "KZ", "2025", "H3"]))
def test_json_schema_is_never_stricter(leaf: tuple[str, Make, tuple], value: Any) -> None:
    typ, make, path = leaf
    body = set_at(make(), path, value)
    if marshmallow_accepts(typ, body):
        assert json_schema_accepts(typ, body)


@pytest.mark.parametrize(("typ", "name", "make"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_member_removals_agree(typ: str, name: str, make: Make) -> None:
    body = make()
    required = {n for n, field in MESSAGE_TYPES[typ]().fields.items() if field.required}
    for member in body:
        changed = copy.deepcopy(body)
        del changed[member]
        if member in required:
            assert not marshmallow_accepts(typ, changed), member
            assert not json_schema_accepts(typ, changed), member
        elif marshmallow_accepts(typ, changed):
            assert json_schema_accepts(typ, changed), member


# --- the reference page --------------------------------------------------------------------


def test_reference_page_covers_types_parts_and_codes() -> None:
    page = export.REFERENCE_PAGE.read_text(encoding="utf-8")
    for typ in MESSAGE_TYPES:
        assert f"\n## {typ}\n" in page
    for part in (
        "Person",
        "Subject",
        "Identity",
        "Document",
        "Organisation",
        "Vehicle",
        "Account",
        "Event",
        "Link",
        "Location",
        "Channel",
        "Consent",
    ):
        if part == "Person":
            continue  # persons appear as subjects and victims
        assert f"\n### {part}\n" in page, part
    for title, codes in export.CODE_LISTS.items():
        assert f"\n### {title}\n" in page
        for code in codes:
            assert f"| `{code}` |" in page, (title, code)
    for typ, schema_class in MESSAGE_TYPES.items():
        section = page.split(f"\n## {typ}\n", 1)[1].split("\n## ", 1)[0]
        for name in schema_class().fields:
            assert f"| `{name}` |" in section, (typ, name)
