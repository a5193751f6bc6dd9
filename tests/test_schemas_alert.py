"""The alert/1 body schema, its shared building blocks and the type registry."""

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import xb1json
from schemas.alert import (
    ALERT_KINDS,
    INTERPOL_NOTICE_COLOURS,
    WANTED_SUSPECT_COLOURS,
    AlertSchema,
    interpol_colour,
)
from schemas.errors import SchemaInvalid, UnsupportedType, WireFormatError
from schemas.examples import (
    EXAMPLE_ALERTS,
    example_alert,
    example_alert_tajik_cyrillic,
    example_alert_uzbek_latin,
)
from schemas.registry import MESSAGE_TYPES, validate_body

Path = tuple[str | int, ...]


def errors_of(body: object) -> dict[Any, Any]:
    with pytest.raises(SchemaInvalid) as caught:
        validate_body("alert/1", body)
    assert caught.value.code == "schema-invalid"
    return caught.value.errors


def error_at(errors: dict[Any, Any], path: Path) -> list[str]:
    """The messages at ``path`` in a marshmallow errors dict (fails if there are none)."""
    node: Any = errors
    for step in path:
        assert isinstance(node, dict) and step in node, f"no error at {path}: {errors}"
        node = node[step]
    assert isinstance(node, list) and node, f"no messages at {path}: {errors}"
    return node


def set_at(body: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


def leaf_paths(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from leaf_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from leaf_paths(child, (*path, index))
    else:
        yield path, value


# --- valid bodies -------------------------------------------------------------------


@pytest.mark.parametrize("make", EXAMPLE_ALERTS.values(), ids=EXAMPLE_ALERTS.keys())
def test_examples_load_unchanged(make: Callable[..., dict[str, Any]]) -> None:
    body = make()
    loaded = validate_body("alert/1", body)
    assert loaded == body
    assert type(loaded) is dict
    assert xb1json.loads_canonical(xb1json.dumps(loaded)) == body


def test_examples_cover_several_scripts() -> None:
    scripts = {
        name["script"]
        for make in EXAMPLE_ALERTS.values()
        for subject in make()["subjects"]
        for name in subject["names"]
    }
    languages = {
        name.get("lang")
        for make in EXAMPLE_ALERTS.values()
        for subject in make()["subjects"]
        for name in subject["names"]
    }
    assert {"Cyrl", "Latn"} <= scripts
    assert {"kk", "ru", "uz", "tg"} <= languages


def test_examples_are_fresh_copies_with_overrides() -> None:
    first = example_alert(urgency="immediate")
    first["subjects"].clear()
    assert example_alert()["subjects"]
    assert first["urgency"] == "immediate"


def test_minimal_alert_without_optional_members() -> None:
    body = example_alert_tajik_cyrillic()
    for optional in ("locations",):
        del body[optional]
    body["handling"] = {"code": "H0"}
    body["legal_basis"] = {"instrument": "national:TJ:criminal-procedure-code"}
    body["subjects"] = [
        {
            "category": "suspect",
            "names": [
                {"original": "Faridun Rahimov", "script": "Latn", "latin": "Faridun Rahimov"}
            ],
            "statement": {
                "text": "Named by victims.",
                "nature": "fact",
                "reliability": "B",
                "accuracy": 2,
            },
        }
    ]
    assert validate_body("alert/1", body) == body


def test_modus_operandi_alert_needs_no_subject() -> None:
    body = example_alert(kind="modus-operandi")
    del body["subjects"]
    assert validate_body("alert/1", body) == body


@pytest.mark.parametrize(
    "name",
    [
        {
            "original": "Öwezgeldi Ýazmyradow",
            "script": "Latn",
            "latin": "Öwezgeldi Ýazmyradow",
            "lang": "tk",
        },
        {"original": "Асель Жакыпова", "script": "Cyrl", "latin": "Asel Zhakypova", "lang": "ky"},
        {"original": "Şükrü Yılmaz", "script": "Latn", "latin": "Sukru Yilmaz", "lang": "tr"},
        {"original": "محمد کریمی", "script": "Arab", "latin": "Mohammad Karimi", "lang": "fa"},
        {"original": "王伟", "script": "Hans", "latin": "Wang Wei", "lang": "zh"},
        {"original": "Oʻgʻiloy", "script": "Latn", "latin": "Oʻgʻiloy"},
        {"original": "ᠪᠠᠲᠤ", "script": "Mong", "latin": "Batu", "lang": "mn"},
        {"original": "Jean-Luc O'Neil", "script": "Latn", "latin": "Jean-Luc O'Neil"},
    ],
    ids=lambda name: name["original"],
)
def test_names_in_many_scripts(name: dict[str, str]) -> None:
    body = set_at(example_alert(), ("subjects", 0, "names", 1), name)
    assert validate_body("alert/1", body) == body


def test_a_letter_of_another_script_is_refused_after_names_of_both_passed() -> None:
    """Characters seen to pass are remembered per script: a Cyrillic name accepted
    before does not let its letters into a Latin name, nor the reverse, and a name
    refused once is refused again."""
    cyrillic = {"original": "Асель Жакыпова", "script": "Cyrl", "latin": "Asel Zhakypova"}
    latin = {"original": "Asel Zhakypova", "script": "Latn", "latin": "Asel Zhakypova"}
    path = ("subjects", 0, "names", 1)
    for name in (cyrillic, latin, cyrillic, latin):
        body = set_at(example_alert(), path, name)
        assert validate_body("alert/1", body) == body
    for original, script in 2 * [("Асель Zhakypova", "Cyrl"), ("Asel Жакыпова", "Latn")]:
        mixed = {"original": original, "script": script, "latin": "Asel Zhakypova"}
        messages = error_at(errors_of(set_at(example_alert(), path, mixed)), (*path, "original"))
        assert messages[0].startswith(f"Letters not in script {script}:")


def test_names_are_checked_alike_once_the_remembered_letters_are_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from schemas import common

    monkeypatch.setattr(common, "_MOST_PASSING_REMEMBERED", 10)
    prefixes = ("CYRILLIC ", "CYRILLIC ")  # a key of its own, same rule as Cyrl
    for text in ("Асель", "Жакыпова", "Нурлан", "Айгерим"):
        assert common._letters_outside_script(text, prefixes) == []
    remembered = common._PASSING_CHARACTERS.pop(prefixes)
    assert 10 <= len(remembered) < 10 + len("Жакыпова")  # stops growing past the bound
    assert common._letters_outside_script("Айгерим A", prefixes) == ["A"]


# --- cross-field rules --------------------------------------------------------------


def test_recruitment_channel_alert_needs_a_channel() -> None:
    body = example_alert(kind="recruitment-channel")
    assert validate_body("alert/1", body) == body
    del body["channels"]
    assert error_at(errors_of(body), ("channels",))


@pytest.mark.parametrize("kind", ["trafficked-person", "missing-person"])
def test_person_alert_needs_a_victim(kind: str) -> None:
    body = example_alert(kind=kind)
    body["subjects"] = [s for s in body["subjects"] if s["category"] != "victim"]
    assert error_at(errors_of(body), ("subjects",))
    del body["subjects"]
    assert error_at(errors_of(body), ("subjects",))


def test_wanted_suspect_alert_needs_a_suspect_or_convicted_person() -> None:
    body = example_alert_tajik_cyrillic()
    body["subjects"][0]["category"] = "convicted"
    assert validate_body("alert/1", body) == body
    body["subjects"][0]["category"] = "witness"
    assert error_at(errors_of(body), ("subjects",))


def test_sought_for_belongs_to_wanted_suspect_alerts_only() -> None:
    body = example_alert_tajik_cyrillic()
    del body["sought_for"]
    assert error_at(errors_of(body), ("sought_for",))
    assert error_at(errors_of(example_alert(sought_for="arrest")), ("sought_for",))


def test_h3_needs_handling_text() -> None:
    body = example_alert(handling={"code": "H3"})
    assert error_at(errors_of(body), ("handling", "text"))
    body["handling"]["text"] = "Not to be shared with the migration service."
    assert validate_body("alert/1", body) == body


def test_tlp_clear_contradicts_h2() -> None:
    assert error_at(errors_of(example_alert(tlp="CLEAR")), ("tlp",))
    body = example_alert(tlp="CLEAR", handling={"code": "H0"})
    assert validate_body("alert/1", body) == body


def test_every_rule_violation_is_reported_at_once() -> None:
    body = example_alert_tajik_cyrillic(kind="recruitment-channel")
    errors = errors_of(body)
    assert error_at(errors, ("sought_for",))
    assert error_at(errors, ("channels",))


# --- single bad fields ----------------------------------------------------------------

SUBJECT = ("subjects", 0)
NAME = (*SUBJECT, "names", 0)
CHANNELS = ("channels",)

BAD_FIELDS: list[tuple[Path, Any]] = [
    (("kind",), "kidnapping"),
    (("title",), ""),
    (("title",), "   "),
    (("title",), "x" * 201),
    (("title",), "line\nbreak"),
    (("title",), "spoof\u202eed"),
    (("summary",), "x" * 4001),
    (("summary",), "bell\x07"),
    (("urgency",), "URGENT"),
    (("purpose",), "intelligence"),
    (("tlp",), "TLP:AMBER"),
    (("tlp",), "amber"),
    (("handling", "code"), "H4"),
    (("legal_basis", "instrument"), "some treaty"),
    (("legal_basis", "instrument"), "bilateral:KZ-KZ:2019"),
    (("legal_basis", "instrument"), "national:XX:code"),
    (("retention_days",), 0),
    (("retention_days",), 3651),
    (("retention_days",), "730"),
    (("reported_at",), -1),
    (("reported_at",), "1741944600"),
    (("reported_at",), True),
    (("nature",), "opinion"),
    (("reliability",), "D"),
    (("reliability",), "b"),
    (("accuracy",), 0),
    (("accuracy",), 5),
    (("accuracy",), "2"),
    (("subjects",), []),
    ((*SUBJECT, "category"), "offender"),
    ((*SUBJECT, "names"), []),
    ((*SUBJECT, "names"), "Aigerim"),
    ((*SUBJECT, "sex"), "F"),
    ((*SUBJECT, "date_of_birth"), "2001-13"),
    ((*SUBJECT, "date_of_birth"), "2001-02-30"),
    ((*SUBJECT, "date_of_birth"), "07/2001"),
    ((*SUBJECT, "date_of_birth"), "2001-7"),
    ((*SUBJECT, "date_of_birth"), "٢٠٠١"),
    ((*SUBJECT, "nationality"), "kz"),
    ((*SUBJECT, "nationality"), "KAZ"),
    ((*SUBJECT, "nationality"), "XK"),
    ((*SUBJECT, "nationality"), "SU"),
    ((*SUBJECT, "statement", "nature"), "rumour"),
    ((*SUBJECT, "statement", "text"), ""),
    ((*NAME, "script"), "cyrl"),
    ((*NAME, "script"), "Cyrillic"),
    ((*NAME, "lang"), "kaz"),
    ((*NAME, "lang"), "KK"),
    ((*NAME, "latin"), "Айгерим"),
    ((*NAME, "latin"), "Aigerim 2"),
    ((*NAME, "latin"), "'-"),
    ((*NAME, "original"), "Aйгерим Нурланова"),  # Latin A in a Cyrillic name
    ((*NAME, "original"), ""),
    (("locations", 0, "country"), "Kazakhstan"),
    (("locations", 0, "role"), "hideout"),
    ((*CHANNELS, 0, "type"), "fax"),
    ((*CHANNELS, 0, "platform"), "Telegram"),
    ((*CHANNELS, 1, "value"), "8 700 000 00 00"),
    ((*CHANNELS, 2, "value"), "ftp://jobs.example.org"),
]


@pytest.mark.parametrize(("path", "value"), BAD_FIELDS, ids=lambda v: repr(v)[:40])
def test_bad_field_is_named(path: Path, value: Any) -> None:
    body = set_at(example_alert(), path, value)
    error_at(errors_of(body), path)


def test_messenger_channel_needs_platform() -> None:
    body = example_alert()
    del body["channels"][0]["platform"]
    error_at(errors_of(body), ("channels", 0, "platform"))


def test_email_channel_is_checked() -> None:
    good = example_alert(channels=[{"type": "email", "value": "recruiter@example.com"}])
    assert validate_body("alert/1", good) == good
    bad = {"type": "email", "value": "recruiter at example.com"}
    error_at(errors_of(example_alert(channels=[bad])), ("channels", 0, "value"))


@pytest.mark.parametrize(
    ("field", "limit"), [(("subjects",), 50), ((*SUBJECT, "names"), 10), (("channels",), 20)]
)
def test_list_limits(field: Path, limit: int) -> None:
    body = example_alert()
    node: Any = body
    for step in field:
        node = node[step]
    item = node[0]
    at_limit = set_at(body, field, [copy.deepcopy(item) for _ in range(limit)])
    assert validate_body("alert/1", at_limit) == at_limit
    over = set_at(body, field, [copy.deepcopy(item) for _ in range(limit + 1)])
    error_at(errors_of(over), field)


# --- unknown members, nulls, floats anywhere ------------------------------------------


@pytest.mark.parametrize(
    "where", [(), SUBJECT, NAME, ("handling",), ("legal_basis",), ("channels", 0), ("locations", 0)]
)
def test_unknown_member_is_rejected(where: Path) -> None:
    body = example_alert()
    node: Any = body
    for step in where:
        node = node[step]
    node["colour"] = "yellow"
    assert error_at(errors_of(body), (*where, "colour")) == ["Unknown field."]


def test_camel_case_member_is_unknown() -> None:
    body = example_alert()
    body["retentionDays"] = body.pop("retention_days")
    errors = errors_of(body)
    error_at(errors, ("retentionDays",))
    error_at(errors, ("retention_days",))


LEAVES = list(leaf_paths(example_alert()))


@pytest.mark.parametrize("path", [path for path, _ in LEAVES], ids=repr)
def test_float_at_any_leaf_is_rejected(path: Path) -> None:
    error_at(errors_of(set_at(example_alert(), path, 1.0)), path)


@pytest.mark.parametrize("path", [path for path, _ in LEAVES], ids=repr)
def test_null_at_any_leaf_is_rejected(path: Path) -> None:
    error_at(errors_of(set_at(example_alert(), path, None)), path)


@pytest.mark.parametrize("body", [None, [], "alert", 1, 1.5, True])
def test_body_must_be_an_object(body: object) -> None:
    error_at(errors_of(body), ("_schema",))


json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@given(st.sampled_from(LEAVES), json_values)
def test_any_replacement_is_accepted_or_schema_invalid(leaf: tuple[Path, Any], value: Any) -> None:
    path, _ = leaf
    body = set_at(example_alert(), path, value)
    try:
        loaded = validate_body("alert/1", body)
    except SchemaInvalid as e:
        assert e.errors
    else:
        assert loaded == body
        xb1json.dumps(loaded)


# --- INTERPOL colours -----------------------------------------------------------------


def test_every_kind_has_a_colour() -> None:
    assert set(INTERPOL_NOTICE_COLOURS) == set(ALERT_KINDS)
    assert set(WANTED_SUSPECT_COLOURS.values()) == {"red", "blue"}


@pytest.mark.parametrize(
    ("make", "overrides", "colour"),
    [
        (example_alert, {}, "yellow"),
        (example_alert_uzbek_latin, {}, "yellow"),
        (example_alert, {"kind": "recruitment-channel"}, "purple"),
        (example_alert, {"kind": "modus-operandi"}, "purple"),
        (example_alert_tajik_cyrillic, {}, "red"),
        (example_alert_tajik_cyrillic, {"sought_for": "locate"}, "blue"),
        (example_alert_tajik_cyrillic, {"sought_for": "information"}, "blue"),
    ],
)
def test_interpol_colour(make: Callable[..., dict[str, Any]], overrides: dict, colour: str) -> None:
    assert interpol_colour(validate_body("alert/1", make(**overrides))) == colour


# --- registry ------------------------------------------------------------------------


def test_registry_knows_alert_1() -> None:
    assert MESSAGE_TYPES["alert/1"] is AlertSchema


@pytest.mark.parametrize(
    "typ", ["alert/2", "Alert/1", "alert", "referral/2", "receipt/1", "", None, 1]
)
def test_unknown_type_is_unsupported(typ: Any) -> None:
    with pytest.raises(UnsupportedType) as caught:
        validate_body(typ, example_alert())
    assert caught.value.code == "unsupported-type"
    assert isinstance(caught.value, WireFormatError)


def test_schema_invalid_is_a_wire_format_error() -> None:
    with pytest.raises(WireFormatError) as caught:
        validate_body("alert/1", {})
    assert isinstance(caught.value, SchemaInvalid)
    assert caught.value.code == "schema-invalid"
    assert "kind" in caught.value.errors
