"""A fast path for loading a message body, compiled from the marshmallow schema itself.

Marshmallow spends most of a load in its generic machinery (error stores, getters,
per-field ``deserialize`` wrappers, hook resolution), not in the checks the schemas
declare. :func:`compile_loader` walks a schema's declared load fields once and
builds, for each object schema, one generated Python function (its members written
out in declaration order, the plain leaf checks inline, and for plain ASCII Latin
names and partial dates an inline test of the common case before the field's own
check) and closures for the rest, which run the same checks in the same order:

* the schema's own rules: a ``dict`` only, unknown members refused (``RAISE``),
  required members present, output keys in declaration order;
* each field's own ``_deserialize`` (the project's ``Text``, ``Code``,
  ``PatternText``, ``PartialDate``, ``LatinText`` and their subclasses, and
  marshmallow's ``Integer``, ``String``, ``Boolean``), then its validators
  (``Range``, ``OneOf``, ...), exactly as ``Field.deserialize`` calls them;
* ``List`` and ``StrictList`` (a ``list`` only, length before items) and ``Nested``
  (recursively, honouring the nested field's ``unknown``);
* the schema's ``@validates_schema`` hooks, called on the loaded data in the order
  and with the arguments marshmallow uses.

The loader only ever *accepts*: it returns the loaded body, or ``None`` when
anything does not hold, and the caller then runs marshmallow, whose decision and
error messages are the ones that count. So a body the loader accepts must be one
marshmallow accepts with the same output; ``tests/test_schemas_fastcheck.py``
checks that for every registered type on examples and generated mutations.

Anything the compiler does not know is left to marshmallow, never guessed at: a
field class outside the list above (or one overriding ``deserialize`` or
``_validate``, or with field-level pre/post-load functions, a ``load_default``,
``allow_none``, or a dotted ``attribute``) is loaded by that field's own
``deserialize``; a schema with ``pre_load``, ``post_load`` or ``@validates`` hooks,
``many``, ``partial`` or another ``unknown`` policy than ``RAISE`` is loaded by
``schema.load``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA
from marshmallow.utils import missing

from . import common

# A compiled loader takes (value, data of the enclosing object) and returns the loaded
# value, or raises _Reject / ValidationError.
_Loader = Callable[[Any, Any], Any]


class _Reject(Exception):
    """The fast path does not accept this value; marshmallow decides. Raised as a new
    instance each time: one shared instance would keep, through its traceback, every
    frame it was ever raised from, and the refused bodies in them."""


#: Field classes whose ``_deserialize`` is a function of the value alone (no nested
#: schema, no partial, no context), so calling it is what ``Field.deserialize`` does
#: between its missing/None handling and its validators.
_LEAF_DESERIALIZERS = frozenset(
    {
        common.Text._deserialize,
        common.LatinText._deserialize,
        common.Code._deserialize,
        common.PatternText._deserialize,
        common.PartialDate._deserialize,
        fields.Integer._deserialize,
        fields.String._deserialize,
        fields.Boolean._deserialize,
    }
)


@cache
def loader_for(schema: Schema) -> Callable[[object], dict[str, Any] | None] | None:
    """:func:`compile_loader`, once per schema instance (schemas hold no per-call state)."""
    return compile_loader(schema)


def compile_loader(schema: Schema) -> Callable[[object], dict[str, Any] | None] | None:
    """A fast loader for ``schema`` (an instance), or None if the schema itself is not
    one the compiler knows (then every body goes to ``schema.load``)."""
    compiled = _compile_schema(schema, None)
    if compiled is None:
        return None
    load = compiled

    def fast_load(body: object) -> dict[str, Any] | None:
        try:
            return load(body, None)  # type: ignore[no-any-return]
        except (_Reject, ValidationError):
            return None

    return fast_load


def uncompiled_fields(schema: Schema) -> list[str]:
    """Paths of the fields that the compiled loader hands to marshmallow's own
    ``deserialize`` (``[]`` marks list items); empty when everything is compiled."""
    found: list[str] = []
    _walk_uncompiled(schema, "", found, set())  # a schema nested in itself is walked once
    return found


def _walk_uncompiled(schema: Schema, prefix: str, found: list[str], seen: set[type]) -> None:
    if type(schema) in seen:
        return
    seen.add(type(schema))
    for attr_name, field in schema.load_fields.items():
        path = f"{prefix}{attr_name}"
        while True:
            implementation = type(field)._deserialize
            if not _standard_field(field):
                found.append(path)
            elif implementation in (common.StrictList._deserialize, fields.List._deserialize):
                field, path = field.inner, path + "[]"  # type: ignore[attr-defined]
                continue
            elif implementation is fields.Nested._deserialize and not field.many:  # type: ignore[attr-defined]
                _walk_uncompiled(field.schema, path + ".", found, seen)  # type: ignore[attr-defined]
            elif implementation not in _LEAF_DESERIALIZERS:
                found.append(path)
            break


def _standard_field(field: fields.Field[Any]) -> bool:
    """True when ``field.deserialize`` is marshmallow's own, with nothing around
    ``_deserialize`` and the validators that the compiled loader would skip."""
    cls = type(field)
    return (
        cls.deserialize is fields.Field.deserialize
        and cls._validate is fields.Field._validate
        and cls._validate_missing is fields.Field._validate_missing
        and not field.pre_load
        and not field.post_load
        and not field.allow_none
    )


def _compile_field(field: fields.Field[Any], attr: str | None) -> _Loader:
    """``attr`` is what marshmallow passes as ``attr``: the member's key in its object,
    None for list items."""
    compiled = _compile_known_field(field, attr) if _standard_field(field) else None
    if compiled is None:
        # Not a class the compiler knows: marshmallow loads this field (only).
        deserialize = field.deserialize
        return lambda value, data: deserialize(value, attr, data)
    validators = tuple(field.validators)
    if not validators:
        return compiled

    def validated(value: Any, data: Any) -> Any:
        output = compiled(value, data)
        for validator in validators:
            validator(output)
        return output

    return validated


def _plain_leaf(field: fields.Field[Any]) -> _Loader | None:
    """For the most common field classes, the accepting half of their ``_deserialize``
    inlined (a value they would refuse, or one of another type, goes to marshmallow).
    The attributes read are the ones ``_deserialize`` reads, at compile time: fields
    are not changed after a schema is built."""
    implementation = type(field)._deserialize
    if implementation is common.Code._deserialize:
        choices = field.choices  # type: ignore[attr-defined]

        def code(value: Any, data: Any) -> Any:
            if type(value) is str and value in choices:
                return value
            raise _Reject

        return code
    if implementation is common.Text._deserialize:
        low, high = field.min_length, field.max_length  # type: ignore[attr-defined]
        forbidden = field._forbidden  # type: ignore[attr-defined]

        def text(value: Any, data: Any) -> Any:
            if (
                type(value) is str
                and low <= len(value) <= high
                and value.strip()
                and not forbidden.search(value)
            ):
                return value
            raise _Reject

        return text
    if implementation is common.PatternText._deserialize:
        pattern, longest = field.pattern, field.max_length  # type: ignore[attr-defined]

        def pattern_text(value: Any, data: Any) -> Any:
            if type(value) is str and len(value) <= longest and pattern.fullmatch(value):
                return value
            raise _Reject

        return pattern_text
    if (
        isinstance(field, fields.Integer)
        and implementation is fields.Number._deserialize
        and type(field)._validated is fields.Integer._validated
        and type(field).num_type is int
        and field.strict
    ):

        def integer(value: Any, data: Any) -> Any:
            if type(value) is int:  # not bool, which is a subclass
                return value
            raise _Reject

        return integer
    return None


def _compile_known_field(field: fields.Field[Any], attr: str | None) -> _Loader | None:
    implementation = type(field)._deserialize
    plain = _plain_leaf(field)
    if plain is not None:
        return plain
    if implementation in _LEAF_DESERIALIZERS:
        deserialize = field._deserialize

        def leaf(value: Any, data: Any) -> Any:
            if value is None:  # Field.deserialize: "Field may not be null."
                raise _Reject
            return deserialize(value, attr, data)

        return leaf
    if implementation is common.StrictList._deserialize:
        assert isinstance(field, common.StrictList)
        inner = _compile_field(field.inner, None)
        low, high = field.min_items, field.max_items

        def strict_list(value: Any, data: Any) -> list[Any]:
            # List items get no attr and no data (marshmallow's List does the same).
            if type(value) is not list or not low <= len(value) <= high:
                raise _Reject
            return [inner(item, None) for item in value]

        return strict_list
    if implementation is fields.List._deserialize:
        assert isinstance(field, fields.List)
        inner = _compile_field(field.inner, None)

        def plain_list(value: Any, data: Any) -> list[Any]:
            if type(value) is not list:
                raise _Reject
            return [inner(item, None) for item in value]

        return plain_list
    if implementation is fields.Nested._deserialize:
        assert isinstance(field, fields.Nested)
        if field.many:
            return None
        return _lazy_nested(field, attr)
    return None


def _lazy_nested(field: fields.Nested, attr: str | None) -> _Loader:
    """The nested schema is compiled when first needed: marshmallow builds it lazily
    too, and a schema may nest itself (through a callable) to any depth."""
    compiled: list[_Loader] = []

    def nested(value: Any, data: Any) -> Any:
        if not compiled:
            schema = field.schema
            loader = None if schema.many else _compile_schema(schema, field.unknown)
            if loader is None:
                deserialize = field.deserialize
                loader = lambda value, data: deserialize(value, attr, data)  # noqa: E731
            compiled.append(loader)
        return compiled[0](value, data)

    return nested


def _compile_schema(schema: Schema, unknown: str | None) -> _Loader | None:
    """Mirror ``Schema._do_load`` for one object (many=False, partial unset)."""
    policy = schema.unknown if unknown is None else unknown
    hooks = schema._hooks
    if (
        schema.many
        or schema.partial not in (None, False)
        or policy != RAISE
        or schema.dict_class is not dict
        or hooks[PRE_LOAD]
        or hooks[POST_LOAD]
        or hooks[VALIDATES]
    ):
        return None

    # _invoke_schema_validators runs pass_collection hooks first, then the others,
    # each group in the order of schema._hooks; it looks the method up by name.
    ordered = [h for h in hooks[VALIDATES_SCHEMA] if h[1]] + [
        h for h in hooks[VALIDATES_SCHEMA] if not h[1]
    ]
    validators = [
        (getattr(schema, name), bool(options.get("pass_original", False)))
        for name, _, options in ordered
    ]
    return _generate_load(schema, policy, validators)


def _generate_load(
    schema: Schema, policy: str, validators: list[tuple[Callable[..., Any], bool]]
) -> _Loader | None:
    """The object loader of ``schema`` as one generated function: each declared member
    in declaration order, written out (no loop over a member table), and the checks
    of the plain leaf fields (``_inline_check``) written in place, without a call.

    Only names bound in ``namespace`` and literals made by ``repr`` of the schema's
    own member names and bounds appear in the source, never data."""
    namespace: dict[str, Any] = {"_Reject": _Reject, "missing": missing, "partial": schema.partial}
    lines = [
        "def load(data, _enclosing):",
        "    if type(data) is not dict or not allowed(data):",
        "        raise _Reject",
        "    get = data.get",
        "    loaded = {}",
    ]
    keys: list[str] = []
    for index, (attr_name, field) in enumerate(schema.load_fields.items()):
        in_key = field.data_key if field.data_key is not None else attr_name
        out_key = field.attribute or attr_name
        if "." in out_key:  # marshmallow's set_value would build nested dicts
            return None
        keys.append(in_key)
        lines.append(f"    value = get({in_key!r}, missing)")
        lines.append("    if value is missing:")
        if field.required:
            lines.append("        raise _Reject")
        elif (
            field.load_default is missing
            and type(field)._validate_missing is fields.Field._validate_missing
        ):
            # A missing optional member is skipped unless the field has something to
            # say about it (a load_default, or its own missing check).
            lines.append("        pass")
        else:
            namespace[f"field{index}"] = field
            lines.append(f"        default = field{index}.deserialize(missing, {in_key!r}, data)")
            lines.append("        if default is not missing:")
            lines.append(f"            loaded[{out_key!r}] = default")
        inline = _inline_check(field, index, namespace)
        if inline is not None:
            # What the inline test does not accept, the field's own loader decides.
            namespace[f"load{index}"] = _compile_field(field, in_key)
            lines.append(f"    elif {inline}:")
            lines.append(f"        loaded[{out_key!r}] = value")
            lines.append("    else:")
            lines.append(f"        loaded[{out_key!r}] = load{index}(value, data)")
        else:
            namespace[f"load{index}"] = _compile_field(field, in_key)
            lines.append("    else:")
            lines.append(f"        loaded[{out_key!r}] = load{index}(value, data)")
    namespace["allowed"] = frozenset(keys).issuperset
    for index, (validator, pass_original) in enumerate(validators):
        namespace[f"validator{index}"] = validator
        original = "data, " if pass_original else ""
        lines.append(
            f"    validator{index}(loaded, {original}partial=partial, many=False, "
            f"unknown={policy!r})"
        )
    lines.append("    return loaded")
    exec("\n".join(lines), namespace)  # noqa: S102 - our own source, see above
    return namespace["load"]  # type: ignore[no-any-return]


def _inline_check(field: fields.Field[Any], index: int, namespace: dict[str, Any]) -> str | None:
    """For a field without validators: an expression on ``value`` (its constants bound
    in ``namespace``) that is true only for values the field accepts as they are, else
    None. For the fields ``_plain_leaf`` inlines it is their whole accepting test; for
    ``LatinText`` (plain ASCII names) and ``PartialDate`` it is the common case, and
    the field's own loader decides the rest."""
    if not _standard_field(field) or field.validators:
        return None
    implementation = type(field)._deserialize
    if implementation is common.LatinText._deserialize:
        text = _text_check(field, index, namespace)  # LatinText is a Text, then ASCII
        if text is None:
            return None
        namespace[f"ascii_name{index}"] = field._PLAIN_ASCII.fullmatch  # type: ignore[attr-defined]
        return f"{text} and value.isascii() and ascii_name{index}(value)"
    if implementation is common.PartialDate._deserialize:
        namespace[f"partial_date{index}"] = common.PartialDate.accepts
        # Only date-sized strings reach the cache: a long one is refused anyway.
        return f"type(value) is str and len(value) <= 10 and partial_date{index}(value)"
    if _plain_leaf(field) is None:
        return None
    if implementation is common.Code._deserialize:
        namespace[f"choices{index}"] = field.choices  # type: ignore[attr-defined]
        return f"type(value) is str and value in choices{index}"
    if implementation is common.Text._deserialize:
        return _text_check(field, index, namespace)
    if implementation is common.PatternText._deserialize:
        longest = field.max_length  # type: ignore[attr-defined]
        if type(longest) is not int:
            return None
        namespace[f"pattern{index}"] = field.pattern.fullmatch  # type: ignore[attr-defined]
        return f"type(value) is str and len(value) <= {longest!r} and pattern{index}(value)"
    return "type(value) is int"  # the strict Integer of _plain_leaf (not bool)


def _text_check(field: fields.Field[Any], index: int, namespace: dict[str, Any]) -> str | None:
    """``Text._deserialize``'s accepting test as an expression on ``value``."""
    low, high = field.min_length, field.max_length  # type: ignore[attr-defined]
    if type(low) is not int or type(high) is not int:
        return None
    namespace[f"forbidden{index}"] = field._forbidden.search  # type: ignore[attr-defined]
    return (
        f"type(value) is str and {low!r} <= len(value) <= {high!r} and value.strip() "
        f"and not forbidden{index}(value)"
    )
