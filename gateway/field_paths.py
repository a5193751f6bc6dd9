"""Field paths of minimisation rules: what they name, how they remove it, and whether
the standard's message bodies have such a member at all.

A path names a member of a message body (docs/policy.md, "Minimisation by audience"):
``channels`` (the whole member), ``subjects[*].date_of_birth`` (that member in every
element of a list), ``subjects[category=suspect]`` (the list elements whose
``category`` is ``suspect``); a path starting ``**.`` applies at every depth.

A path that names nothing removes nothing, silently: a rule meant to keep a field
inside the state would let it leave. So :func:`problem` checks a path against the
declarations of the standard's types (the marshmallow schemas in ``schemas/``)
before a policy is accepted.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from typing import Any

from marshmallow import Schema, fields, validate

from schemas.common import Code
from schemas.correction import JsonObject
from schemas.registry import MESSAGE_TYPES

PATH = re.compile(
    r"(\*\*\.)?[a-z_]+(\[(\*|[a-z_]+=[A-Za-z0-9_.-]+)\])?(\.[a-z_]+(\[(\*|[a-z_]+=[A-Za-z0-9_.-]+)\])?)*\Z"
)
ANYWHERE = "**."
_SEGMENT = re.compile(r"([a-z_]+)(?:\[([^\]]*)\])?")

Segment = tuple[str, str | None]  # (key, selector: None, "*" or "field=value")


def parse(path: str) -> list[Segment]:
    """The segments of a path that matches :data:`PATH` (without ``**.``); a
    selector's value may hold dots (``[field=a.b]``)."""
    return [(key, selector or None) for key, selector in _SEGMENT.findall(path)]


def _matches(item: object, selector: str) -> bool:
    if selector == "*":
        return True
    name, _, value = selector.partition("=")
    return isinstance(item, dict) and str(item.get(name)) == value


def drop(node: object, segments: list[Segment]) -> bool:
    """Remove what ``segments`` names under ``node``; True if anything was removed."""
    if not isinstance(node, dict) or not segments:
        return False
    (key, selector), rest = segments[0], segments[1:]
    if key not in node:
        return False
    if selector is None:
        if not rest:
            del node[key]
            return True
        return drop(node[key], rest)
    items = node[key]
    if not isinstance(items, list):
        return False
    if not rest:
        kept = [item for item in items if not _matches(item, selector)]
        if len(kept) == len(items):
            return False
        if kept:
            node[key] = kept
        else:
            del node[key]  # schemas forbid empty lists: the member goes
        return True
    changed = False
    for item in items:
        if _matches(item, selector):
            changed = drop(item, rest) or changed
    return changed


def drop_anywhere(node: object, segments: list[Segment]) -> bool:
    """:func:`drop` at this level and at every depth below (paths starting ``**.``)."""
    changed = drop(node, segments)
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in list(children):
        changed = drop_anywhere(child, segments) or changed
    return changed


# -- what the standard's bodies hold ---------------------------------------------
# A node of the walk below is a marshmallow schema class (an object with named
# members), a field (a list, a code, text ...), or FREE: an object whose members the
# schema does not name (a correction's body, checked against its own type when it
# is received).

FREE = object()


def _members(schema_class: type[Schema]) -> dict[str, fields.Field[Any]]:
    """The members of a body part as they are named in JSON (``data_key`` or name)."""
    declared = schema_class._declared_fields
    return {
        (field.data_key if field.data_key is not None else name): field
        for name, field in declared.items()
        if not field.dump_only
    }


def _node(field: fields.Field[Any]) -> Any:
    if isinstance(field, fields.Nested):
        nested = field.nested
        return nested if isinstance(nested, type) and issubclass(nested, Schema) else FREE
    if isinstance(field, JsonObject):
        return FREE
    return field


def _object(node: Any) -> bool:
    return node is FREE or (isinstance(node, type) and issubclass(node, Schema))


def _values(field: Any) -> frozenset[str] | None:
    """The values a member can take, when its schema lists them."""
    if isinstance(field, Code):
        return frozenset(field.choices)
    for validator in getattr(field, "validators", ()):
        if isinstance(validator, validate.OneOf):
            return frozenset(str(choice) for choice in validator.choices)
    return None


@functools.cache
def _parts(typ: str) -> tuple[tuple[str, type[Schema]], ...]:
    """The body of ``typ`` and every part a body of that type can hold, named."""
    found: dict[type[Schema], str] = {}
    todo: list[tuple[str, type[Schema]]] = [("the body", MESSAGE_TYPES[typ])]
    while todo:
        name, schema_class = todo.pop()
        if schema_class in found:
            continue
        found[schema_class] = name
        for member, field in _members(schema_class).items():
            node = _node(field.inner if isinstance(field, fields.List) else field)
            if isinstance(node, type):
                todo.append((f"'{member}'", node))
            elif node is FREE:  # a corrected body: a body of any other type
                todo += [
                    (f"a corrected body of {other}", MESSAGE_TYPES[other])
                    for other in sorted(MESSAGE_TYPES)
                    if other != typ
                ]
    return tuple((name, schema_class) for schema_class, name in found.items())


def _walk_free(segments: list[Segment]) -> tuple[int, str | None]:
    """``segments`` from a corrected body: they resolve if they do in the body of any
    message type it can be (a correction corrects a message of another type)."""
    best: tuple[int, str | None] = (0, None)
    for typ in sorted(MESSAGE_TYPES):
        if any(node is FREE for node in map(_node, _members(MESSAGE_TYPES[typ]).values())):
            continue  # a correction does not carry a correction
        done, reason = _walk(MESSAGE_TYPES[typ], segments, f"a corrected body of {typ}")
        if reason is None:
            return len(segments), None
        if best[1] is None or done > best[0]:
            best = (done, reason)
    return best


def _walk(node: Any, segments: list[Segment], where: str) -> tuple[int, str | None]:
    """How many segments resolve from ``node`` and, if not all, why the next does not."""
    done = 0
    for index, (key, selector) in enumerate(segments):
        last = index == len(segments) - 1
        if node is FREE:
            inside, reason = _walk_free(segments[index:])
            return done + inside, reason
        members = _members(node)
        if key not in members:
            close = difflib.get_close_matches(key, list(members), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return done, f"no member '{key}' in {where}{hint}"
        field = members[key]
        if selector is None:
            if last:
                return len(segments), None
            if isinstance(field, fields.List):
                following = segments[index + 1][0]
                return done, (
                    f"'{key}' is a list: write '{key}[*].{following}' for every element "
                    f"or '{key}[field=value].{following}' for some"
                )
            node = _node(field)
            if not _object(node):
                return done, f"'{key}' is not an object: nothing is inside it"
            where = f"'{key}'"
            done += 1
            continue
        if not isinstance(field, fields.List):
            return done, f"'{key}' is not a list: [...] selects elements of a list"
        node = _node(field.inner)
        if selector != "*":
            name, _, value = selector.partition("=")
            if node is not FREE:
                item_members = _members(node) if _object(node) else {}
                if name not in item_members:
                    return done, f"elements of '{key}' have no member '{name}' to select by"
                allowed = _values(item_members[name])
                if allowed is not None and value not in allowed:
                    return done, (
                        f"'{value}' is not a value of '{name}' in '{key}'; "
                        f"the values are {', '.join(sorted(allowed))}"
                    )
        if not last and not _object(node):
            return done, f"elements of '{key}' are not objects: nothing is inside them"
        where = f"elements of '{key}'"
        done += 1
    return len(segments), None


def problem(path: str, types: Iterable[str] | None) -> str | None:
    """Why ``path`` (matching :data:`PATH`) names nothing in any body of ``types``
    (None: every type of the standard), or None if it names something in one."""
    anywhere = path.startswith(ANYWHERE)
    segments = parse(path.removeprefix(ANYWHERE))
    best: tuple[int, str] | None = None
    members: set[str] = set()
    for typ in sorted(MESSAGE_TYPES if types is None else types):
        starts = _parts(typ) if anywhere else _parts(typ)[:1]
        for name, start in starts:
            members.update(_members(start))
            done, reason = _walk(start, segments, f"{name} of {typ}")
            if reason is None:
                return None
            if best is None or done > best[0]:
                best = (done, reason)
    if best is None:  # no types: nothing to check against
        return None
    if best[0] == 0 and anywhere:
        close = difflib.get_close_matches(segments[0][0], sorted(members), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"no object at any depth has a member '{segments[0][0]}'{hint}"
    return best[1]


def values_of(types: Iterable[str], member: str) -> dict[str, frozenset[str] | None]:
    """For each of ``types`` whose body has the member ``member``: the values it can
    take, or None when the schema lists none (any text)."""
    found: dict[str, frozenset[str] | None] = {}
    for typ in sorted(types):
        field = _members(MESSAGE_TYPES[typ]).get(member)
        if field is not None:
            found[typ] = _values(field)
    return found
