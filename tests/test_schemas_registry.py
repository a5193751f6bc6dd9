"""Every registered message schema can only load values xb1-json can carry, so
``validate_body`` needs no runtime re-check of what it returns."""

import pytest
from marshmallow import Schema, fields

from schemas import common, xb1json
from schemas.correction import JsonObject
from schemas.examples import EXAMPLES
from schemas.registry import MESSAGE_TYPES, validate_body

# Field classes whose loaded values are str, int, bool, list or dict of those. The
# project's own string fields are declared Field[str] and return the input string.
SAFE = (
    fields.String,
    fields.Integer,
    fields.Boolean,
    fields.Nested,
    fields.List,
    common.Text,
    common.Code,
    common.PatternText,
    common.PartialDate,
    # correction/1's body: a dict validated by, and equal to what is loaded by, the
    # schema of the corrected type, which this test walks as well.
    JsonObject,
)
UNSAFE = (
    fields.Float,
    fields.Decimal,
    fields.DateTime,
    fields.Date,
    fields.Raw,
    fields.Dict,
    fields.Number,
)


def walk(schema: Schema, path: str = ""):
    for name, field in schema.fields.items():
        yield f"{path}{name}", field
        inner = field
        while isinstance(inner, fields.List):
            inner = inner.inner
            yield f"{path}{name}[]", inner
        if isinstance(inner, fields.Nested):
            yield from walk(inner.schema, f"{path}{name}.")


@pytest.mark.parametrize("typ", sorted(MESSAGE_TYPES))
def test_every_field_loads_xb1_json_values(typ):
    for path, field in walk(MESSAGE_TYPES[typ]()):
        assert isinstance(field, SAFE), f"{typ} {path}: {type(field).__name__}"
        if isinstance(field, fields.Integer):
            assert field.strict, f"{typ} {path}: integers must be strict (no 1.0)"
        if isinstance(field, UNSAFE) and not isinstance(field, fields.Integer):
            raise AssertionError(f"{typ} {path}: {type(field).__name__} is not xb1-json")


@pytest.mark.parametrize("typ", sorted(MESSAGE_TYPES))
def test_loaded_examples_are_canonical_json(typ):
    assert EXAMPLES[typ], f"{typ} has no example"
    for make_example in EXAMPLES[typ].values():
        body = make_example()
        loaded = validate_body(typ, body)
        xb1json.check(loaded)
        assert loaded == body


def test_every_type_has_examples():
    assert set(EXAMPLES) == set(MESSAGE_TYPES)
