"""The policy file: parsing with clear errors, agreement decisions naming their rule,
field-level minimisation by audience, retention caps."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.policy import BUILT_IN_RULES, Policy, load, parse
from schemas.examples import example_alert

GOOD = """
version = 1

[[agreement]]
id = "KZ-KG-2019"
peer = "KG"
types = ["alert/1", "referral/1"]
purposes = ["prevent-trafficking", "victim-identification"]
direction = "both"

[[agreement]]
id = "KZ-UZ-out"
peer = "UZ"
types = ["alert/1"]
purposes = ["*"]
direction = "send"
until = 2026-12-31

[[minimise]]
id = "ngo-no-channels"
audience = ["ngo", "social-service"]
types = ["alert/1"]
drop = ["channels", "subjects[*].date_of_birth"]

[retention]
"alert/1" = 365
"""
NOW = int(datetime(2026, 11, 29, tzinfo=UTC).timestamp())
LATER = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())


@pytest.fixture
def policy() -> Policy:
    return parse(GOOD, Path("policy.toml"))


# (direction, peer, typ, purpose, now) -> (allowed, rule)
MATRIX = [
    ("send", "KG", "alert/1", "prevent-trafficking", NOW, True, "agreement:KZ-KG-2019"),
    ("receive", "KG", "alert/1", "prevent-trafficking", NOW, True, "agreement:KZ-KG-2019"),
    ("send", "KG", "referral/1", "victim-identification", NOW, True, "agreement:KZ-KG-2019"),
    ("send", "KG", "alert/1", "prosecution", NOW, False, "no-agreement"),
    ("send", "KG", "case-request/1", "prevent-trafficking", NOW, False, "no-agreement"),
    ("send", "UZ", "alert/1", "prosecution", NOW, True, "agreement:KZ-UZ-out"),
    ("receive", "UZ", "alert/1", "prosecution", NOW, False, "no-agreement"),
    ("send", "UZ", "alert/1", "prosecution", LATER, False, "agreement:KZ-UZ-out"),
    ("send", "TJ", "alert/1", "prevent-trafficking", NOW, False, "no-agreement"),
]


@pytest.mark.parametrize(("direction", "peer", "typ", "purpose", "now", "allowed", "rule"), MATRIX)
def test_agreement_matrix(policy, direction, peer, typ, purpose, now, allowed, rule):
    decision = policy.decide(direction, peer, typ, purpose, now)
    assert (decision.allowed, decision.rule) == (allowed, rule)
    assert peer in decision.reason


def test_no_policy_file_is_open_and_says_so(tmp_path, caplog):
    policy = load(tmp_path)
    assert policy.open
    decision = policy.decide("send", "TJ", "alert/1", "prosecution", NOW)
    assert (decision.allowed, decision.rule) == (True, "no-policy")
    assert "policy.toml" in caplog.text


def test_minimisation_by_audience(policy):
    body = example_alert()
    body["subjects"][0]["category"] = "victim"
    body["subjects"].append({**body["subjects"][0], "category": "suspect"})
    body["channels"] = [{"type": "phone", "value": "+77011234567"}]
    same, removed = policy.minimise("alert/1", body, None)
    assert same == body and removed == []
    to_police, removed = policy.minimise("alert/1", body, "police")
    assert to_police == body and removed == []
    to_ngo, removed = policy.minimise("alert/1", body, "ngo")
    assert [s["category"] for s in to_ngo["subjects"]] == ["victim"]
    assert "channels" not in to_ngo
    assert all("date_of_birth" not in s for s in to_ngo["subjects"])
    assert ("ngo-no-suspect-data", "**.subjects[category=suspect]") in removed
    assert ("ngo-no-channels", "channels") in removed
    assert body["subjects"][1]["category"] == "suspect"  # the original is untouched


def test_the_ngo_rule_cannot_be_removed():
    policy = parse("version = 1\n", Path("p.toml"))
    assert policy.minimise_rules == BUILT_IN_RULES
    body = example_alert()
    body["subjects"][0]["category"] = "convicted"
    minimised, removed = policy.minimise("alert/1", body, "ngo")
    assert "subjects" not in minimised and removed[0][0] == "ngo-no-suspect-data"
    with pytest.raises(ConfigError, match="used twice"):
        parse(
            'version = 1\n[[minimise]]\nid = "ngo-no-suspect-data"\naudience = ["ngo"]\n'
            'drop = ["channels"]\n',
            Path("p.toml"),
        )


def test_the_ngo_rule_reaches_nested_bodies(policy):
    inner = example_alert()
    body = {"refers_to": "x", "corrected": inner, "other": [{"subjects": inner["subjects"]}]}
    minimised, removed = policy.minimise("correction/1", body, "ngo")
    assert [s["category"] for s in minimised["corrected"]["subjects"]] == ["victim"]
    assert [s["category"] for s in minimised["other"][0]["subjects"]] == ["victim"]
    assert [rule for rule, _ in removed] == ["ngo-no-suspect-data"]


def test_refused_envelopes_are_kept_30_days_unless_the_policy_says_otherwise(policy):
    assert policy.refused_retention_days() == 30
    assert parse("version = 1\n[retention]\nrefused = 7\n", Path("p")).refused_retention_days() == 7
    assert "refused" not in policy.retention  # not a message type: no message uses it


def test_retention_is_capped_by_type(policy):
    assert policy.retention_days("alert/1", {"retention_days": 30}) == 30
    assert policy.retention_days("alert/1", {"retention_days": 3000}) == 365
    assert policy.retention_days("referral/1", {"retention_days": 3000}) == 3000
    assert policy.retention_days("referral/1", None) == 3650


BAD = [
    ("version = 2", "version = 1"),
    ("version = 1\n[other]\n", "unknown sections"),
    ("version = 1\n[[agreement]]\npeer = 'KG'\ntypes = ['alert/1']\n", "needs an id"),
    ("version = 1\n[[agreement]]\nid = 'a'\npeer = 'kg'\ntypes = ['alert/1']\n", "peer"),
    ("version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = []\n", "non-empty list"),
    ("version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alert']\n", "message types"),
    (
        "version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alert/1']\n"
        "purposes = ['fun']\n",
        "unknown values ['fun']",
    ),
    (
        "version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alert/1']\n"
        "direction = 'out'\n",
        "direction",
    ),
    (
        "version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alert/1']\nuntil = 'soon'\n",
        "until",
    ),
    (
        "version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alert/1']\nextra = 1\n",
        "unknown keys",
    ),
    (
        "version = 1\n[[minimise]]\nid = 'm'\naudience = ['press']\ndrop = ['channels']\n",
        "unknown values ['press']",
    ),
    (
        "version = 1\n[[minimise]]\nid = 'm'\naudience = ['ngo']\ndrop = ['channels;drop']\n",
        "field paths",
    ),
    ("version = 1\n[retention]\n'alert/1' = 0\n", "1 to 3650"),
    ("version = 1\n[retention]\n'alert/1' = true\n", "whole number"),
    ("version = 1\n[retention]\nalert = 3\n", "message type"),
    # Well formed, but no type of the standard: the rule would never apply.
    (
        "version = 1\n[[agreement]]\nid = 'a'\npeer = 'KG'\ntypes = ['alerts/1']\n",
        "types the standard does not define: ['alerts/1']",
    ),
    (
        "version = 1\n[[minimise]]\nid = 'm'\naudience = ['ngo']\ntypes = ['alerts/1']\n"
        "drop = ['channels']\n",
        "types the standard does not define",
    ),
    ("version = 1\n[retention]\n'alerts/1' = 30\n", "types the standard does not define"),
    ("version = 1\n[retention]\nrefused = 0\n", "1 to 3650"),
    ("version = 1\n[retention]\nrefused = '30'\n", "whole number"),
    ("version = 1\nnot toml", "not valid TOML"),
]


def refusal(text: str) -> str:
    """The message of the ``policy-invalid`` error that parsing ``text`` raises."""
    with pytest.raises(ConfigError) as raised:
        parse(text, Path("policy.toml"))
    assert raised.value.code == "policy-invalid"
    return raised.value.message


@pytest.mark.parametrize(("text", "message"), BAD)
def test_mistakes_are_named(text, message):
    shown = refusal(text)
    assert message in shown and "policy.toml" in shown


# -- drop paths and route kinds name what the standard's bodies hold -----------------

MINIMISE_RULE = "version = 1\n[[minimise]]\nid = 'm'\naudience = ['ngo']\n"
ROUTING = (
    "version = 1\n[[agency]]\nid = 'kg-police'\ntype = 'police'\n"
    "[[agency]]\nid = 'kg-mvd'\ntype = 'central-authority'\n"
    "[[route]]\nid = 'r'\nagencies = ['kg-police']\n"
)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        # A misspelt member, with the name it was probably meant to be.
        (
            "drop = ['chanels']",
            "no member 'chanels' in the body of alert/1 (did you mean 'channels'?)",
        ),
        ("drop = ['subject[*].names']", "did you mean 'subjects'?"),
        # A list needs a selector: without one the path reaches nothing inside it.
        ("drop = ['subjects.date_of_birth']", "write 'subjects[*].date_of_birth'"),
        # A value its member never takes selects nothing.
        (
            "drop = ['subjects[category=suspekt]']",
            "'suspekt' is not a value of 'category' in 'subjects'; "
            "the values are contact, convicted, suspect,",
        ),
        ("drop = ['subjects[colour=red]']", "no member 'colour' to select by"),
        ("drop = ['title[*]']", "'title' is not a list"),
        ("drop = ['title.text']", "'title' is not an object"),
        ("drop = ['channels[*].handle']", "no member 'handle' in elements of 'channels'"),
        ("drop = ['**.date_of_brith']", "at any depth has a member 'date_of_brith' (did you mean"),
        # A member of another type than the rule's.
        ("types = ['hit-query/1']\ndrop = ['subjects']", "names nothing in hit-query/1"),
        # Inside a correction's corrected body: checked against the bodies it can be.
        (
            "types = ['correction/1']\ndrop = ['body.subjects[*].date_of_brith']",
            "did you mean 'date_of_birth'?",
        ),
    ],
)
def test_a_drop_path_that_names_nothing_is_refused(lines, message):
    shown = refusal(MINIMISE_RULE + lines + "\n")
    assert message in shown, shown
    assert "minimise #1 (m): drop path" in shown


@pytest.mark.parametrize(
    "lines",
    [
        "drop = ['channels', 'subjects[*].date_of_birth', 'subjects[category=contact]']",
        "types = ['alert/1', 'hit-query/1']\ndrop = ['subjects[*].names']",  # one type has it
        "drop = ['**.subjects[category=witness]', '**.documents']",
        "types = ['correction/1']\ndrop = ['body.subjects']",  # a body of any type
        "types = ['correction/1']\ndrop = ['**.date_of_birth']",  # inside the corrected body
        "types = ['case-response/1']\ndrop = ['provided']",
    ],
)
def test_drop_paths_that_name_members_are_accepted(lines):
    policy = parse(MINIMISE_RULE + lines + "\n", Path("policy.toml"))
    assert policy.minimise_rules[-1].id == "m"


def test_the_built_in_rules_name_members_of_the_standard():
    from gateway import field_paths

    for rule in BUILT_IN_RULES:
        for path in rule.drop:
            assert field_paths.problem(path, rule.types) is None, path


def test_the_policy_documentation_examples_parse():
    text = (Path(__file__).resolve().parent.parent / "docs" / "policy.md").read_text()
    blocks = text.split("```toml\n")[1:]
    assert len(blocks) >= 4
    for block in blocks:
        toml = block.split("```")[0]
        if not toml.startswith("version"):
            toml = "version = 1\n" + toml
        parse(toml, Path("policy.toml"))


def test_a_selector_value_may_hold_dots():
    from gateway import field_paths

    assert field_paths.parse("a[b=c.d].e") == [("a", "b=c.d"), ("e", None)]
    body = {"a": [{"b": "c.d", "e": 1}, {"b": "x", "e": 2}]}
    assert field_paths.drop(body, field_paths.parse("a[b=c.d].e"))
    assert body == {"a": [{"b": "c.d"}, {"b": "x", "e": 2}]}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            "types = ['alert/1']\nkinds = ['trafficked-persons']",
            "kinds ['trafficked-persons'] are not kinds of alert/1; the kinds are",
        ),
        (
            "types = ['referral/1']\nkinds = ['missing-person']",
            "no message of referral/1 has a kind",
        ),
    ],
)
def test_a_route_kind_no_message_has_is_refused(lines, message):
    shown = refusal(ROUTING + lines + "\n")
    assert message in shown, shown


def test_a_route_kind_of_one_of_its_types_is_accepted():
    policy = parse(
        ROUTING + "types = ['alert/1', 'referral/1']\nkinds = ['missing-person']\n",
        Path("policy.toml"),
    )
    assert policy.routes[0].kinds == frozenset({"missing-person"})
