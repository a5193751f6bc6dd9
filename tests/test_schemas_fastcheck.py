"""The loader compiled from a marshmallow schema decides exactly as marshmallow does.

For every registered message type: the examples, and 2,000 generated
mutations of them (members dropped, added, retyped, set to other vocabulary codes,
to length and range bounds, to characters of other scripts, lists emptied or
overfilled, sub-objects swapped), must give the same accept/reject decision and,
when accepted, the same loaded output (same values, same types, same key order).
``validate_body`` must keep marshmallow's error messages.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, pre_load, validate, validates_schema

from schemas import common, examples
from schemas.errors import SchemaInvalid
from schemas.fastcheck import compile_loader, uncompiled_fields
from schemas.registry import MESSAGE_TYPES, _schema_for, validate_body

TYPES = sorted(MESSAGE_TYPES)


def example_bodies() -> list[dict[str, Any]]:
    """Every example body in ``schemas.examples``: the zero-argument functions there
    returning a dict, and those collected in its dict tables."""
    found: dict[int, Any] = {}
    for name in dir(examples):
        if name.startswith("_"):
            continue
        value = getattr(examples, name)
        makers = value.values() if isinstance(value, dict) else [value]
        for make in makers:
            if callable(make) and getattr(make, "__module__", None) == examples.__name__:
                found[id(make)] = make
    bodies = []
    for make in found.values():
        try:
            body = make()
        except TypeError:
            continue
        if isinstance(body, dict):
            bodies.append(body)
    return bodies


EXAMPLES = example_bodies()


def marshmallow_decision(schema: Schema, body: Any) -> Any:
    try:
        return schema.load(body)
    except ValidationError:
        return None


def assert_identical(got: Any, expected: Any, path: str = "$") -> None:
    """Equal values of the same types, dict keys in the same order."""
    assert type(got) is type(expected), f"{path}: {type(got).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert list(got) == list(expected), f"{path}: keys {list(got)} != {list(expected)}"
        for key in expected:
            assert_identical(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{path}: lengths differ"
        for index, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_identical(a, b, f"{path}[{index}]")
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"


def check_same_decision(typ: str, body: Any) -> bool:
    """Compare the compiled loader, marshmallow and validate_body on ``body``; return
    whether it was accepted."""
    schema = _schema_for(MESSAGE_TYPES[typ])
    loader = compile_loader(schema)
    assert loader is not None
    snapshot = copy.deepcopy(body)
    expected = marshmallow_decision(schema, body)
    got = loader(body)
    assert body == snapshot, "a loader must not change its input"
    if expected is None:
        assert got is None, f"fast path accepted what marshmallow refuses: {got!r}"
        with pytest.raises(SchemaInvalid) as refused:
            validate_body(typ, body)
        with pytest.raises(ValidationError) as marshmallow_refused:
            schema.load(body)
        assert refused.value.errors == marshmallow_refused.value.messages
        return False
    assert got is not None, "fast path refused what marshmallow accepts"
    assert_identical(got, expected)
    assert_identical(validate_body(typ, body), expected)
    return True


# --------------------------------------------------------------------------- mutations


def walk_fields(schema: Schema) -> list[fields.Field[Any]]:
    found = []
    for field in schema.load_fields.values():
        found.append(field)
        inner = field
        while isinstance(inner, fields.List):
            inner = inner.inner
            found.append(inner)
        if isinstance(inner, fields.Nested):
            found.extend(walk_fields(inner.schema))
    return found


def interesting_values(schema: Schema) -> list[Any]:
    """Values near the edges of what the schema's fields declare."""
    values: list[Any] = [
        None,
        True,
        False,
        0,
        1,
        -1,
        1.0,
        2.5,
        2**63,
        "",
        " ",
        "\t",
        "x",
        "A",
        "5",
        "\u202e",
        "\x00",
        "a\nb",
        "a\u2028b",
        "\ud800",
        [],
        {},
        [{}],
        ["x"],
        "2024-02-30",
        "2024-02-29",
        "2023-02-29",
        "2024",
        "2024-13",
        "+77011234567",
        "+7701",
        "a@b.example",
        "https://example.org/x",
        "ftp://example.org",
        "telegram",
        "Telegram",
        "national:KZ:code-1",
        "national:XK:code",
        "bilateral:KZ-KZ:x",
        "bilateral:KZ-UZ:2019-04",
    ]
    for field in walk_fields(schema):
        if isinstance(field, common.Code):
            values.extend(sorted(field.choices)[:40])
        if isinstance(field, common.Text):
            values.extend(["a" * field.max_length, "a" * (field.max_length + 1)])
        for validator in field.validators:
            if isinstance(validator, validate.Range):
                for bound in (validator.min, validator.max):
                    if bound is not None:
                        values.extend([bound - 1, bound, bound + 1])
            if isinstance(validator, validate.OneOf):
                values.extend(validator.choices)
    return values


STRING_PIECES = [
    "a",
    "Z",
    "é",
    "ň",
    "ʻ",
    "'",
    "-",
    ".",
    " ",
    "1",
    "Й",
    "ж",
    "α",
    "ا",
    "א",
    "中",
    "\u0301",
    "\u200b",
    "\u202a",
    "\u2066",
    "\x1f",
    "\x7f",
    "\n",
    "\t",
    "_",
    "@",
    "/",
    ":",
    "+",
    "A",
    "İ",
    "ß",
    "ǅ",
]


def all_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            paths.extend(all_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths.extend(all_paths(value, (*prefix, index)))
    return paths


def get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def subtrees(node: Any) -> list[Any]:
    return [get(node, path) for path in all_paths(node) if isinstance(get(node, path), dict | list)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn, typ: str) -> Any:
    schema = _schema_for(MESSAGE_TYPES[typ])
    seeds = EXAMPLES
    body = copy.deepcopy(draw(st.sampled_from(seeds)))
    pool = interesting_values(schema)
    donors = [tree for seed in seeds for tree in subtrees(seed)]
    scalars = [
        get(seed, p)
        for seed in seeds
        for p in all_paths(seed)
        if not isinstance(get(seed, p), dict | list)
    ]
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(all_paths(body)))
        target = get(body, path)
        parent = get(body, path[:-1]) if path else None
        operation = draw(
            st.sampled_from(
                ["drop", "pool", "scalar", "donor", "random", "unknown", "append", "list", "same"]
            )
        )
        new: Any = target
        if operation == "drop" and path:
            del parent[path[-1]]
            continue
        if operation == "unknown" and isinstance(target, dict):
            # A copy: a pool value inserted as is could later be mutated into containing
            # itself, and a body with a cycle is no JSON.
            target[draw(st.sampled_from(["extra", "kind", "names", "text", "Text", ""]))] = (
                copy.deepcopy(draw(st.sampled_from(pool)))
            )
            continue
        if operation == "list" and isinstance(target, list):
            if target and draw(st.booleans()):
                target.extend(copy.deepcopy(target[0]) for _ in range(draw(st.integers(1, 60))))
            else:
                target.clear()
            continue
        if operation == "pool":
            new = copy.deepcopy(draw(st.sampled_from(pool)))
        elif operation == "scalar":
            new = draw(st.sampled_from(scalars))
        elif operation == "donor":
            new = copy.deepcopy(draw(st.sampled_from(donors)))
        elif operation == "random":
            new = draw(json_values)
        elif operation == "append" and isinstance(target, str):
            piece = "".join(draw(st.lists(st.sampled_from(STRING_PIECES), min_size=1, max_size=3)))
            position = draw(st.integers(0, len(target)))
            new = target[:position] + piece + target[position:]
        if path:
            parent[path[-1]] = new
        else:
            body = new
    return body


# --------------------------------------------------------------------------- tests


def test_there_are_examples():
    assert EXAMPLES, "schemas/examples.py has no example bodies"


@pytest.mark.parametrize("typ", TYPES)
def test_registered_type_has_an_accepted_example(typ):
    """Without one, the mutations below would only ever test refusals for this type."""
    schema = _schema_for(MESSAGE_TYPES[typ])
    assert any(marshmallow_decision(schema, body) is not None for body in EXAMPLES), (
        f"add an example {typ} body to schemas/examples.py"
    )


@pytest.mark.parametrize("typ", TYPES)
def test_examples_decide_the_same(typ):
    for body in EXAMPLES:
        check_same_decision(typ, body)


@pytest.mark.parametrize("typ", TYPES)
@settings(
    # 800 per type and run (each run draws new ones): ~10 s a type on a 2-core VM.
    max_examples=800,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutations_decide_the_same(typ, data):
    check_same_decision(typ, data.draw(mutated(typ)))


@pytest.mark.parametrize("typ", TYPES)
@settings(max_examples=300, deadline=None)
@given(body=json_values)
def test_arbitrary_json_decides_the_same(typ, body):
    check_same_decision(typ, body)


def test_mutations_reach_both_decisions():
    """The generator is worth something only if it produces bodies of both kinds."""
    outcomes = set()

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def run(data):
        outcomes.add(check_same_decision("alert/1", data.draw(mutated("alert/1"))))

    run()
    assert outcomes == {True, False}


def test_alert_fields_are_all_compiled():
    """Every field of alert/1 runs on the fast path (none is handed to marshmallow)."""
    assert uncompiled_fields(_schema_for(MESSAGE_TYPES["alert/1"])) == []


# --------------------------------------------------------------------------- fallbacks


class Shouting(fields.Field[str]):
    """A field class the compiler does not know."""

    calls = 0

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        Shouting.calls += 1
        if not isinstance(value, str) or value != value.upper():
            raise self.make_error("validator_failed")
        return value


class WithUnknownField(common.StrictSchema):
    loud = Shouting(required=True)
    quiet = common.Text(max_length=5)
    count = common.Int(1, 3)
    tags = common.StrictList(Shouting(), min_items=1, max_items=2)


def test_unknown_field_class_is_loaded_by_marshmallow():
    schema = WithUnknownField()
    loader = compile_loader(schema)
    assert loader is not None
    assert uncompiled_fields(schema) == ["loud", "tags[]"]
    before = Shouting.calls
    assert loader({"loud": "HI", "tags": ["A"], "count": 2}) == {
        "loud": "HI",
        "count": 2,
        "tags": ["A"],
    }
    assert Shouting.calls == before + 2
    for body in (
        {"loud": "hi"},
        {"loud": "HI", "count": True},
        {"loud": "HI", "tags": []},
        {"loud": "HI", "tags": ["a"]},
        {"loud": "HI", "quiet": "toolong"},
        {"x": 1},
    ):
        assert loader(body) is None
        with pytest.raises(ValidationError):
            schema.load(body)


class WithPreLoad(common.StrictSchema):
    name = common.Text(max_length=5, required=True)

    @pre_load
    def _strip(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return data


def test_schema_with_pre_load_is_not_compiled():
    assert compile_loader(WithPreLoad()) is None


class Inner(common.StrictSchema):
    value = common.Int(0, 9, required=True)


class Outer(common.StrictSchema):
    inner = fields.Nested(Inner, required=True)
    checked: list[str] = []

    @validates_schema
    def _b_second(self, data: dict[str, Any], **kwargs: Any) -> None:
        Outer.checked.append("b")

    @validates_schema
    def _a_first(self, data: dict[str, Any], **kwargs: Any) -> None:
        Outer.checked.append("a")
        if data["inner"]["value"] == 7:
            raise ValidationError("no sevens", "inner")


def test_schema_hooks_run_in_marshmallows_order():
    schema = Outer()
    loader = compile_loader(schema)
    assert loader is not None
    Outer.checked.clear()
    schema.load({"inner": {"value": 1}})
    marshmallow_order = list(Outer.checked)
    Outer.checked.clear()
    assert loader({"inner": {"value": 1}}) == {"inner": {"value": 1}}
    assert Outer.checked == marshmallow_order == ["a", "b"]
    assert loader({"inner": {"value": 7}}) is None


class Tree(common.StrictSchema):
    label = common.Text(max_length=10, required=True)
    children = common.StrictList(fields.Nested(lambda: Tree()), min_items=1, max_items=3)


def test_self_nested_schema_compiles():
    loader = compile_loader(Tree())
    assert loader is not None
    body = {"label": "a", "children": [{"label": "b", "children": [{"label": "c"}]}]}
    assert loader(body) == Tree().load(body)
    assert loader({"label": "a", "children": [{"label": ""}]}) is None


class WithBoolean(common.StrictSchema):
    # With no truthy set, Boolean._deserialize returns bool(value): only
    # Field.deserialize's own null check refuses None.
    flag = fields.Boolean(truthy=set(), required=True)


def test_null_is_refused_as_marshmallow_refuses_it():
    schema = WithBoolean()
    loader = compile_loader(schema)
    assert loader is not None
    assert loader({"flag": 0}) == schema.load({"flag": 0}) == {"flag": False}
    assert loader({"flag": None}) is None
    with pytest.raises(ValidationError):
        schema.load({"flag": None})


class _Tracked:
    """A value the fast path refuses, whose lifetime a weak reference can follow."""


def test_a_refused_body_is_not_kept_after_its_validation():
    """The fast path gives up on a value by raising; nothing of that (the frames and
    the refused body in them) may outlive the call: a body refused at step 8 holds
    personal data, and thousands of them would pile up in memory."""
    import gc
    import weakref

    tracked = _Tracked()
    body = examples.example_alert()
    body["summary"] = tracked  # not a string: the compiled loader refuses it
    seen = weakref.ref(tracked)
    for _ in range(3):  # refused on the fast path, then by marshmallow
        with pytest.raises(SchemaInvalid):
            validate_body("alert/1", body)
    del body, tracked
    gc.collect()
    assert seen() is None
