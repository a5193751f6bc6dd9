"""The message types of the standard besides alert/1 (referral/1, case-request/1,
case-response/1, hit-query/1, hit-answer/1, correction/1), the entities they
share, and the realistic examples of every type."""

import ast
import copy
from collections.abc import Callable, Iterator
from pathlib import Path as Path_
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import schemas
from schemas import b64, xb1json
from schemas.case_response import DEFAULT_HANDLING, with_default_handling
from schemas.common import iban_is_valid, json_objects, partial_dates_in_order
from schemas.correction import CORRECTABLE_TYPES
from schemas.errors import SchemaInvalid
from schemas.examples import (
    EXAMPLES,
    example_alert_kyrgyz_network,
    example_case_request,
    example_case_request_immediate,
    example_case_response,
    example_case_response_refusal,
    example_correction,
    example_hit_answer,
    example_hit_query,
    example_referral,
    example_referral_turkmen,
    example_withdrawal,
)
from schemas.hit_query import TOKEN_KINDS
from schemas.registry import MESSAGE_TYPES, validate_body

Path = tuple[str | int, ...]
Make = Callable[..., dict[str, Any]]

ALL_EXAMPLES = [
    (typ, name, make) for typ, examples in EXAMPLES.items() for name, make in examples.items()
]
EXAMPLE_IDS = [f"{typ}:{name}" for typ, name, _ in ALL_EXAMPLES]


def errors_of(typ: str, body: object) -> dict[Any, Any]:
    with pytest.raises(SchemaInvalid) as caught:
        validate_body(typ, body)
    return caught.value.errors


def error_at(errors: dict[Any, Any], path: Path) -> list[str]:
    """The messages at ``path`` in a marshmallow errors dict (fails if there are none)."""
    node: Any = errors
    for step in path:
        assert isinstance(node, dict) and step in node, f"no error at {path}: {errors}"
        node = node[step]
    assert isinstance(node, list) and node, f"no messages at {path}: {errors}"
    assert all(isinstance(message, str) and message for message in node)
    return node


def set_at(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


def delete_at(body: dict[str, Any], path: Path) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return body


def leaf_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaf_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaf_paths(child, (*path, index))
    else:
        yield path


def object_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    if isinstance(value, dict):
        yield path
        for key, child in value.items():
            yield from object_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from object_paths(child, (*path, index))


def names_in(value: Any) -> Iterator[dict[str, Any]]:
    return (o for o in json_objects(value) if {"original", "script", "latin"} <= o.keys())


# --- every example --------------------------------------------------------------------


@pytest.mark.parametrize(("typ", "name", "make"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_example_loads_unchanged(typ: str, name: str, make: Make) -> None:
    body = make()
    loaded = validate_body(typ, body)
    assert loaded == body
    assert xb1json.loads_canonical(xb1json.dumps(loaded)) == body


def test_every_type_has_at_least_one_example_and_new_types_two() -> None:
    assert set(EXAMPLES) == set(MESSAGE_TYPES)
    for typ, examples in EXAMPLES.items():
        assert len(examples) >= (1 if typ.startswith("hit-") else 2), typ


def test_examples_cover_the_scripts_and_languages_of_the_region() -> None:
    names = [name for _, _, make in ALL_EXAMPLES for name in names_in(make())]
    pairs = {(name["script"], name.get("lang")) for name in names}
    for pair in [
        ("Cyrl", "kk"),
        ("Cyrl", "ky"),
        ("Cyrl", "tg"),
        ("Cyrl", "uz"),
        ("Latn", "uz"),
        ("Latn", "tk"),
        ("Cyrl", "ru"),
    ]:
        assert pair in pairs, pair


@pytest.mark.parametrize(("typ", "name", "make"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_unknown_member_in_any_object_is_named(typ: str, name: str, make: Make) -> None:
    body = make()
    for path in object_paths(body):
        changed = set_at(body, (*path, "remarks"), "x") if path else {**body, "remarks": 1}
        assert error_at(errors_of(typ, changed), (*path, "remarks")) == ["Unknown field."]


@pytest.mark.parametrize(("typ", "name", "make"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_null_or_float_at_any_leaf_is_named(typ: str, name: str, make: Make) -> None:
    body = make()
    for path in leaf_paths(body):
        error_at(errors_of(typ, set_at(body, path, None)), path)
        error_at(errors_of(typ, set_at(body, path, 1.0)), path)


@pytest.mark.parametrize(("typ", "name", "make"), ALL_EXAMPLES, ids=EXAMPLE_IDS)
def test_every_required_member_is_named_when_missing(typ: str, name: str, make: Make) -> None:
    body = make()
    schema = MESSAGE_TYPES[typ]()
    for member, field in schema.fields.items():
        if field.required:
            assert error_at(errors_of(typ, delete_at(body, (member,))), (member,)) == [
                "Missing data for required field."
            ]


# --- single bad fields, per type --------------------------------------------------------

BAD_FIELDS: list[tuple[Make, Path, Any]] = [
    # entities (in the Kyrgyz network alert)
    (example_alert_kyrgyz_network, ("subjects", 0, "id"), "P1"),
    (example_alert_kyrgyz_network, ("subjects", 0, "id"), "1p"),
    (example_alert_kyrgyz_network, ("subjects", 0, "id"), "p" * 33),
    (example_alert_kyrgyz_network, ("subjects", 0, "documents", 0, "type"), "passport"),
    (example_alert_kyrgyz_network, ("subjects", 0, "documents", 0, "type"), "p"),
    (example_alert_kyrgyz_network, ("subjects", 0, "documents", 0, "issuing_country"), "KGZ"),
    (example_alert_kyrgyz_network, ("subjects", 0, "documents", 0, "expires_on"), "09/2031"),
    (example_alert_kyrgyz_network, ("subjects", 0, "documents", 0, "status"), "confiscated"),
    (example_alert_kyrgyz_network, ("subjects", 0, "documents", 0, "number"), ""),
    (example_alert_kyrgyz_network, ("subjects", 1, "other_nationalities", 0), "SU"),
    (example_alert_kyrgyz_network, ("subjects", 0, "place_of_birth", "latin"), "Нарын"),
    (example_alert_kyrgyz_network, ("subjects", 1, "identities", 0, "kind"), "fake"),
    (example_alert_kyrgyz_network, ("subjects", 1, "identities", 0, "names"), []),
    (example_alert_kyrgyz_network, ("organisations", 0, "type"), "llc"),
    (example_alert_kyrgyz_network, ("organisations", 0, "names", 0, "script"), "Cyrillic"),
    (example_alert_kyrgyz_network, ("vehicles", 0, "type"), "lorry"),
    (example_alert_kyrgyz_network, ("vehicles", 0, "vin"), "WDB9066331S12345O"),
    (example_alert_kyrgyz_network, ("vehicles", 0, "vin"), "WDB9066331S1234"),
    (example_alert_kyrgyz_network, ("accounts", 0, "type"), "paypal"),
    (example_alert_kyrgyz_network, ("accounts", 0, "currency"), "som"),
    (example_alert_kyrgyz_network, ("accounts", 1, "iban"), "KZ84 722C 0000 1234 5678"),
    (example_alert_kyrgyz_network, ("accounts", 1, "iban"), "KZ85722C000012345678"),
    (example_alert_kyrgyz_network, ("accounts", 1, "iban"), "XX84722C000012345678"),
    (example_alert_kyrgyz_network, ("events", 0, "type"), "kidnapping"),
    (example_alert_kyrgyz_network, ("events", 0, "date"), "2024-13"),
    (example_alert_kyrgyz_network, ("events", 0, "involved", 0), "P1"),
    (example_alert_kyrgyz_network, ("events", 0, "involved", 0), "p9"),
    (example_alert_kyrgyz_network, ("events", 0, "locations", 0), "p1"),
    (example_alert_kyrgyz_network, ("events", 0, "involved", 0), "e2"),
    (example_alert_kyrgyz_network, ("links", 0, "type"), "knows"),
    (example_alert_kyrgyz_network, ("links", 0, "target"), "nobody"),
    (example_alert_kyrgyz_network, ("links", 0, "source"), "zz"),
    # referral/1
    (example_referral, ("stage",), "repatriation"),
    (example_referral, ("referred_at",), "2025-03-20"),
    (example_referral, ("referring_agency", "type"), "charity"),
    (example_referral, ("receiving_agency", "country"), "Uzbekistan"),
    (example_referral, ("victim", "category"), "witness"),
    (example_referral, ("consent", "form"), "verbal"),
    (example_referral, ("consent", "scope"), []),
    (example_referral, ("consent", "scope", 0), "everything"),
    (example_referral, ("consent", "recipients", 0), "family"),
    (example_referral, ("consent", "language"), "uzb"),
    (example_referral, ("consent", "withdrawn_at"), 1_742_371_199),
    (example_referral, ("risk_assessment", "level"), "severe"),
    (example_referral, ("risk_assessment", "factors", 0), "gossip"),
    (example_referral, ("needs", 0), "housing"),
    (example_referral, ("requested_services", 0, "area"), "housing"),
    (example_referral, ("capacity_request", "respond_by"), 1_742_457_600),
    (example_referral, ("handover", "planned_at"), 1_742_400_000),
    (example_referral, ("handover", "escort"), "uncle"),
    (example_referral, ("handover", "contact", "value"), "0 712 00 00 00"),
    # case-request/1
    (example_case_request, ("requesting_authority", "type"), "kgb"),
    (example_case_request, ("case_reference",), "   "),
    (example_case_request, ("offences",), []),
    (example_case_request, ("offences", 0, "code"), "art-128"),
    (example_case_request, ("facts", "reliability"), "E"),
    (example_case_request, ("data_sought", 0, "category"), "everything"),
    (example_case_request, ("data_sought", 0, "concerning", 0), "p7"),
    (example_case_request, ("data_sought", 1, "period_end"), "2024-08"),
    (example_case_request, ("deadline",), 1_742_536_800),
    (example_case_request_immediate, ("deadline",), 1_742_536_800 + 73 * 3600),
    # case-response/1
    (example_case_response, ("in_reply_to",), "01959F6E-4C00-7A3B-8D21-6F0E9B2C4A11"),
    (example_case_response, ("in_reply_to",), "01959f6e4c007a3b8d216f0e9b2c4a11"),
    (example_case_response, ("outcome",), "done"),
    (example_case_response, ("expected_by",), 1_742_536_800),
    (example_case_response, ("provided", "subjects", 0, "category"), "accused"),
    (example_case_response, ("provided", "events", 0, "involved", 1), "d9"),
    (example_case_response_refusal, ("refusal_ground",), "too-busy"),
    # hit-query/1
    (example_hit_query, ("index_key",), "KZ-UZ-2025"),
    (example_hit_query, ("tokens",), []),
    (example_hit_query, ("tokens", 0, "kind"), "passport"),
    (example_hit_query, ("tokens", 0, "token"), "Rahimov Faridun"),
    (example_hit_query, ("tokens", 0, "token"), b64.b64e(bytes(31))),
    (example_hit_query, ("tokens", 0, "token"), b64.b64e(bytes(32)) + "="),
    (example_hit_query, ("tokens", 0, "token"), b64.b64e(bytes(32))[:-1] + "B"),
    (example_hit_query, ("tokens", 0, "token"), "+" + b64.b64e(bytes(32))[1:]),
    # hit-answer/1
    (example_hit_answer, ("in_reply_to",), "query-1"),
    (example_hit_answer, ("results", 0, "result"), "maybe"),
    (example_hit_answer, ("results", 0, "reference"), "Rahimov, Faridun, 1979"),
    (example_hit_answer, ("results", 0, "token"), "hit"),
    # correction/1
    (example_correction, ("refers_to",), "alert-1"),
    (example_correction, ("refers_to_type",), "correction/1"),
    (example_correction, ("refers_to_type",), "alert/2"),
    (example_correction, ("action",), "update"),
    (example_correction, ("reason_code",), "typo"),
    (example_correction, ("reason",), ""),
    (example_correction, ("body",), "the corrected alert"),
    (example_correction, ("body", "kind"), "kidnapping"),
    (example_correction, ("body", "subjects", 0, "date_of_birth"), "2001-02-30"),
]


@pytest.mark.parametrize(
    ("make", "path", "value"),
    BAD_FIELDS,
    ids=[
        f"{make.__name__}:{'.'.join(map(str, path))}={value!r:.20}"
        for make, path, value in BAD_FIELDS
    ],
)
def test_bad_field_is_named(make: Make, path: Path, value: Any) -> None:
    typ = next(typ for typ, _, m in ALL_EXAMPLES if m is make)
    error_at(errors_of(typ, set_at(make(), path, value)), path)


# --- entities and local references -------------------------------------------------------


def test_duplicate_local_id_is_named_where_it_repeats() -> None:
    body = example_alert_kyrgyz_network()
    body["vehicles"][0]["id"] = "p1"
    messages = error_at(errors_of("alert/1", body), ("vehicles", 0, "id"))
    assert messages == ["Local id 'p1' is already used at subjects.0."]


def test_document_inside_an_identity_is_referenceable() -> None:
    body = example_alert_kyrgyz_network()
    body["events"][1]["involved"].append("d2")
    assert validate_body("alert/1", body) == body


def test_event_may_not_name_an_event_but_a_link_may() -> None:
    body = example_alert_kyrgyz_network()
    body["links"].append(
        {
            "source": "e1",
            "type": "associated-with",
            "target": "e2",
            "nature": "assessment",
            "reliability": "B",
            "accuracy": 3,
        }
    )
    assert validate_body("alert/1", body) == body
    body["events"][0]["involved"] = ["e2"]
    assert error_at(errors_of("alert/1", body), ("events", 0, "involved", 0)) == [
        "'e2' is of kind event; expected one of: account, channel, document, location, "
        "organisation, person, vehicle."
    ]
    body["events"][0]["involved"] = ["p1"]
    body["events"][0]["locations"] = ["o1"]
    assert error_at(errors_of("alert/1", body), ("events", 0, "locations", 0)) == [
        "'o1' is of kind organisation; expected one of: location."
    ]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b["links"][0].update(target="p2"), ("links", 0, "target")),
        (lambda b: b["events"][1].pop("date"), ("events", 1, "date")),
        (lambda b: b["events"][1].update(end_date="2024-11-30"), ("events", 1, "end_date")),
        (lambda b: b["vehicles"][0].pop("country"), ("vehicles", 0, "country")),
        (
            lambda b: b["vehicles"].__setitem__(0, {"type": "car", "colour": "red"}),
            ("vehicles", 0, "registration"),
        ),
        (lambda b: b["accounts"][0].update(iban="KZ84722C000012345678"), ("accounts", 0, "iban")),
        (lambda b: b["accounts"][0].pop("number"), ("accounts", 0, "number")),
        (lambda b: b["accounts"][0].update(network="tron"), ("accounts", 0, "network")),
        (lambda b: b["accounts"][1].update(country="KG"), ("accounts", 1, "country")),
        (lambda b: b["accounts"][1].pop("iban"), ("accounts", 1, "number")),
        (
            lambda b: b["accounts"].append({"type": "crypto", "number": "TQx9example"}),
            ("accounts", 2, "network"),
        ),
        (
            lambda b: b["subjects"][0]["documents"][0].update(expires_on="2020"),
            ("subjects", 0, "documents", 0, "expires_on"),
        ),
        (
            lambda b: b["subjects"][0]["documents"][0].update(type="other"),
            ("subjects", 0, "documents", 0, "description"),
        ),
    ],
    ids=lambda value: ".".join(map(str, value)) if isinstance(value, tuple) else "change",
)
def test_entity_rule_is_named(change: Callable[[dict[str, Any]], Any], path: Path) -> None:
    body = example_alert_kyrgyz_network()
    change(body)
    error_at(errors_of("alert/1", body), path)


def test_entities_that_satisfy_their_rules() -> None:
    body = example_alert_kyrgyz_network()
    body["vehicles"].append({"type": "truck", "vin": "XTC65115091234567"})
    body["accounts"].append(
        {"type": "crypto", "number": "TQx9exampleAddress", "network": "tron", "currency": "USD"}
    )
    body["accounts"].append({"type": "card", "number": "4400 43** **** 1234"})
    body["documents"] = [
        {
            "type": "other",
            "number": "0012345",
            "issuing_country": "RU",
            "description": "Patent for work (migrant work permit)",
            "expires_on": "2025",
        }
    ]
    assert validate_body("alert/1", body) == body


def test_partial_dates_compare_at_shared_precision() -> None:
    assert partial_dates_in_order("2025", "2025-01-01")
    assert partial_dates_in_order("2025-03", "2025")
    assert partial_dates_in_order("2024-12-31", "2025-01")
    assert not partial_dates_in_order("2025-03-02", "2025-03-01")
    assert not partial_dates_in_order("2026", "2025-12")


def test_iban_check_digits() -> None:
    assert iban_is_valid("GB82WEST12345698765432")  # ISO 13616 example
    assert iban_is_valid("KZ84722C000012345678")
    assert not iban_is_valid("GB82WEST12345698765433")


# --- referral/1 ------------------------------------------------------------------------


def test_referral_needs_a_victim() -> None:
    body = example_referral()
    body["victim"]["category"] = "contact"
    assert error_at(errors_of("referral/1", body), ("victim", "category"))


REFERRAL_CHANGES: list[tuple[Callable[[dict[str, Any]], Any], Path]] = [
    (lambda b: b["consent"]["scope"].remove("documents"), ("victim", "documents")),
    (lambda b: b["consent"]["scope"].remove("risk"), ("risk_assessment",)),
    (lambda b: b["consent"]["scope"].remove("health"), ("needs", 1)),
    (lambda b: b["consent"]["scope"].remove("health"), ("requested_services", 1, "area")),
    (lambda b: b["consent"]["scope"].remove("needs"), ("needs", 0)),
    (lambda b: b["consent"]["scope"].remove("circumstances"), ("circumstances",)),
    (lambda b: b["consent"]["scope"].remove("circumstances"), ("events",)),
    (lambda b: b["consent"]["scope"].remove("circumstances"), ("locations",)),
    (lambda b: b["consent"]["scope"].remove("identity"), ("consent", "scope")),
    (lambda b: b["consent"]["scope"].append("risk"), ("consent", "scope")),
    (
        lambda b: b.update(contact_channels=[{"type": "phone", "value": "+998900000000"}]),
        ("contact_channels",),
    ),
    (lambda b: b["consent"].update(recipients=["ngo"]), ("receiving_agency", "type")),
    (lambda b: b["consent"].update(purposes=["prosecution"]), ("purpose",)),
    (lambda b: b.pop("handover"), ("handover",)),
    (lambda b: b["needs"].append("medical"), ("needs",)),
    (lambda b: b["victim"].update(description="Tattoo on the left arm."), ()),
]


@pytest.mark.parametrize(
    ("change", "path"),
    REFERRAL_CHANGES,
    ids=[f"{i}-{'.'.join(map(str, p))}" for i, (_, p) in enumerate(REFERRAL_CHANGES)],
)
def test_referral_consent_and_stage_rules(
    change: Callable[[dict[str, Any]], Any], path: Path
) -> None:
    body = example_referral()
    change(body)
    if path:
        error_at(errors_of("referral/1", body), path)
    else:  # the full consent covers it
        assert validate_body("referral/1", body) == body


def test_narrow_consent_keeps_documents_inside_identities_out() -> None:
    body = example_referral_turkmen()
    body["victim"]["identities"] = [
        {
            "kind": "former",
            "names": [{"original": "Maýsa Annaýewa", "script": "Latn", "latin": "Maýsa Annaýewa"}],
            "documents": [{"type": "P", "number": "A1234567", "issuing_country": "TM"}],
        }
    ]
    error_at(errors_of("referral/1", body), ("victim", "identities", 0, "documents"))
    del body["victim"]["identities"][0]["documents"]
    assert validate_body("referral/1", body) == body


def test_withdrawn_consent_sends_only_identity() -> None:
    body = example_referral()
    body["consent"]["withdrawn_at"] = body["consent"]["given_at"] + 86_400
    errors = errors_of("referral/1", body)
    for member in ("handover", "needs", "risk_assessment", "circumstances", "events"):
        assert error_at(errors, (member,)) == [
            "Consent was withdrawn: send only the victim's identity."
        ]
    error_at(errors, ("victim", "documents"))
    notice = {
        member: body[member]
        for member in body
        if member
        in {
            "stage",
            "case_reference",
            "referred_at",
            "referring_agency",
            "receiving_agency",
            "consent",
            "purpose",
            "legal_basis",
            "handling",
            "tlp",
            "urgency",
            "retention_days",
        }
    }
    notice["victim"] = {k: v for k, v in body["victim"].items() if k != "documents"}
    assert validate_body("referral/1", notice) == notice


# --- case-request/1 and case-response/1 -------------------------------------------------


@pytest.mark.parametrize("urgency", ["urgent", "immediate"])
def test_urgent_request_says_why(urgency: str) -> None:
    body = example_case_request_immediate(urgency=urgency)
    del body["urgent_reason"]
    assert error_at(errors_of("case-request/1", body), ("urgent_reason",))
    body = example_case_request(urgency="routine")
    del body["urgent_reason"]
    assert validate_body("case-request/1", body) == body


def test_other_data_sought_is_described() -> None:
    body = example_case_request()
    body["data_sought"].append({"category": "other"})
    error_at(errors_of("case-request/1", body), ("data_sought", 4, "detail"))


def test_request_after_a_hit_cites_it() -> None:
    body = example_case_request(
        hit={"query": "01959f70-1a20-7c44-9e02-3b7d5a6c8e21", "reference": "KZ-GP-HIT/2025/0091"}
    )
    assert validate_body("case-request/1", body) == body
    body["hit"]["query"] = "KZ-GP-HIT/2025/0091"
    error_at(errors_of("case-request/1", body), ("hit", "query"))


def _response(outcome: str, **members: Any) -> dict[str, Any]:
    body = example_case_response_refusal()
    for member in ("refusal_ground", "reason"):
        del body[member]
    body.update(outcome=outcome, **members)
    return body


_FINDINGS = {"text": "Nothing on record.", "nature": "fact", "reliability": "A", "accuracy": 1}
_GROUND = {"refusal_ground": "data-not-held", "reason": "No such records."}

RESPONSES_OK = [
    _response("accepted"),
    _response("refused", **_GROUND),
    _response("clarification-requested", clarification="Which operator?"),
    _response("partial", findings=_FINDINGS, outstanding="Bank records."),
    _response("complete", findings=_FINDINGS),
    example_case_response(),
]
RESPONSES_BAD: list[tuple[dict[str, Any], Path]] = [
    (_response("accepted", findings=_FINDINGS), ("findings",)),
    (_response("refused"), ("refusal_ground",)),
    (_response("refused", refusal_ground="other"), ("reason",)),
    (_response("complete", **_GROUND, findings=_FINDINGS), ("refusal_ground",)),
    (_response("clarification-requested"), ("clarification",)),
    (_response("accepted", clarification="Which operator?"), ("clarification",)),
    (_response("complete"), ("provided",)),
    (_response("complete", provided={}), ("provided",)),
    (_response("partial", findings=_FINDINGS), ("outstanding",)),
    (_response("complete", findings=_FINDINGS, outstanding="More."), ("outstanding",)),
    (_response("complete", findings=_FINDINGS, expected_by=1_742_600_000), ("expected_by",)),
]


@pytest.mark.parametrize("body", RESPONSES_OK, ids=lambda b: b["outcome"])
def test_response_outcomes(body: dict[str, Any]) -> None:
    assert validate_body("case-response/1", body) == body


@pytest.mark.parametrize(
    ("body", "path"), RESPONSES_BAD, ids=[f"{b['outcome']}-{p[0]}" for b, p in RESPONSES_BAD]
)
def test_response_outcome_rules(body: dict[str, Any], path: Path) -> None:
    error_at(errors_of("case-response/1", body), path)


def test_responses_default_to_h1_when_composed_not_on_the_wire() -> None:
    draft = example_case_response()
    del draft["handling"]
    assert error_at(errors_of("case-response/1", draft), ("handling",))
    composed = with_default_handling(draft)
    assert composed["handling"] == dict(DEFAULT_HANDLING) == {"code": "H1"}
    assert "handling" not in draft
    assert validate_body("case-response/1", composed) == composed
    chosen = with_default_handling(example_case_response(handling={"code": "H0"}))
    assert chosen["handling"] == {"code": "H0"}


# --- hit-query/1 and hit-answer/1 --------------------------------------------------------


def test_query_example_uses_every_token_kind() -> None:
    assert {entry["kind"] for entry in example_hit_query()["tokens"]} == set(TOKEN_KINDS)


def test_query_tokens_are_32_byte_base64url() -> None:
    for entry in example_hit_query()["tokens"]:
        assert len(b64.b64d(entry["token"], length=32)) == 32


def test_any_32_byte_value_is_a_token() -> None:
    body = example_hit_query()
    for raw in (bytes(32), b"\xff" * 32, bytes(range(32))):
        body["tokens"][0]["token"] = b64.b64e(raw)
        assert validate_body("hit-query/1", body) == body


def test_query_token_repeated_is_named() -> None:
    body = example_hit_query()
    body["tokens"].append(dict(body["tokens"][0]))
    error_at(errors_of("hit-query/1", body), ("tokens", len(body["tokens"]) - 1, "token"))


def test_query_carries_no_raw_identifier() -> None:
    body = example_hit_query()
    body["tokens"][0]["value"] = "Rahimov Faridun"
    error_at(errors_of("hit-query/1", body), ("tokens", 0, "value"))
    error_at(errors_of("hit-query/1", example_hit_query(names=["Rahimov"])), ("names",))


@pytest.mark.parametrize(
    ("index", "change", "member"),
    [(0, {"reference": None}, "reference"), (1, {"reference": "KZ-1"}, "reference")],
)
def test_hit_has_a_reference_and_no_hit_none(index: int, change: dict, member: str) -> None:
    body = example_hit_answer()
    result = body["results"][index]
    result.update(change)
    if result[member] is None:
        del result[member]
    error_at(errors_of("hit-answer/1", body), ("results", index, member))


def test_answer_repeating_a_token_is_named() -> None:
    body = example_hit_answer()
    body["results"][1]["token"] = body["results"][0]["token"]
    error_at(errors_of("hit-answer/1", body), ("results", 1, "token"))


def test_answer_tokens_are_the_query_tokens() -> None:
    queried = [t["token"] for t in example_hit_query()["tokens"]]
    answered = [r["token"] for r in example_hit_answer()["results"]]
    assert answered == queried


# --- correction/1 ------------------------------------------------------------------------


def test_correctable_types_are_the_registered_ones_but_correction() -> None:
    assert set(CORRECTABLE_TYPES) == set(MESSAGE_TYPES) - {"correction/1"}


@pytest.mark.parametrize(
    ("typ", "name", "make"),
    [e for e in ALL_EXAMPLES if e[0] != "correction/1"],
    ids=[i for i in EXAMPLE_IDS if not i.startswith("correction/1")],
)
def test_any_example_can_be_corrected_in_full(typ: str, name: str, make: Make) -> None:
    body = example_correction(refers_to_type=typ, body=make())
    assert validate_body("correction/1", body) == body


def test_corrected_body_must_fit_the_corrected_type() -> None:
    body = example_correction(refers_to_type="referral/1")
    errors = errors_of("correction/1", body)
    assert error_at(errors, ("body", "kind")) == ["Unknown field."]
    error_at(errors, ("body", "victim"))


def test_correct_needs_a_body_and_withdraw_has_none() -> None:
    body = example_correction()
    del body["body"]
    error_at(errors_of("correction/1", body), ("body",))
    error_at(errors_of("correction/1", example_withdrawal(body=example_referral())), ("body",))


# --- robustness ----------------------------------------------------------------------------

ANY_PATH = [
    (typ, make, path)
    for typ, _, make in ALL_EXAMPLES
    for path in [*leaf_paths(make()), *object_paths(make())]
    if path
]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
plausible = st.sampled_from(["p1", "p2", "l1", "d1", "e1", "KZ", "2025-02", "H3", "victim", ""])


@settings(max_examples=400)
@given(st.sampled_from(ANY_PATH), json_values | plausible)
def test_any_replacement_is_accepted_or_named(leaf: tuple[str, Make, Path], value: Any) -> None:
    typ, make, path = leaf
    body = set_at(make(), path, value)
    try:
        loaded = validate_body(typ, body)
    except SchemaInvalid as e:
        assert e.errors
    else:
        assert loaded == body
        xb1json.dumps(loaded)


def test_the_standard_depends_on_nothing_else_in_the_project() -> None:
    package = Path_(schemas.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in {"gateway", "keys", "adapters"}, module.name
