"""The node's sharing policy: what leaves this state, to whom and why, and what comes in.

The policy is one readable file, ``INSTANCE/policy.toml`` (see ``docs/policy.md``):

* ``[[agreement]]`` — a bilateral agreement with one peer: which message types, for
  which purposes, in which direction (``send``, ``receive`` or ``both``), until when.
  Once a policy file exists, an exchange no agreement covers is denied, both ways.
* ``[[minimise]]`` — field-level minimisation by the type of agency the message is
  for (its *audience*, e.g. ``ngo``): the named fields are removed before sealing,
  so they never leave the node. The rule ``ngo-no-suspect-data`` is always in force:
  an NGO never receives persons recorded as suspects or convicts.
* ``[retention]`` — the longest a message type is kept, in days; a body's own
  ``retention_days`` can only shorten it. ``gateway purge`` removes payloads whose
  retention has ended and keeps metadata, receipts and audit evidence. The key
  ``refused`` says how long the bytes of refused envelopes are kept (default 30).

Every decision names the rule that allowed or denied it; the callers record it in
the audit log. A node without a policy file runs open (every exchange allowed, rule
``no-policy``) and says so in a warning at start and as a notice on ``/readyz``.
"""

from __future__ import annotations

import copy
import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from gateway import field_paths
from gateway.envelope import NODE_RE, TYP_RE
from gateway.errors import ConfigError
from gateway.routing import LocalAgency, Route, destinations
from schemas.common import MAX_RETENTION_DAYS, PURPOSES
from schemas.registry import MESSAGE_TYPES

log = logging.getLogger(__name__)

POLICY_FILE = "policy.toml"
CORRECTION = "correction/1"
REFUSED = "refused"  # the [retention] key for the bytes of refused envelopes
REFUSED_RETENTION_DAYS = 30
DIRECTIONS = ("send", "receive", "both")
#: Types of agency a message can be meant for (its audience) and local agencies have.
AGENCY_TYPES = (
    "police",
    "border-service",
    "prosecutor",
    "central-authority",
    "labour-inspectorate",
    "social-service",
    "ngo",
)
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


@dataclass(frozen=True)
class Decision:
    """The outcome of one policy question and the rule that settled it."""

    allowed: bool
    rule: str
    reason: str
    # Set when the refusal was of what a correction carries: that type and purpose.
    carried: tuple[str, object] | None = None

    def recorded(self) -> dict[str, object]:
        """What an audit entry says of the decision besides the message's own type and
        purpose: the rule, and the corrected type and purpose a refusal was about."""
        if self.carried is None:
            return {"rule": self.rule}
        return {
            "rule": self.rule,
            "corrected_typ": self.carried[0],
            "corrected_purpose": self.carried[1],
        }


@dataclass(frozen=True)
class Agreement:
    id: str
    peer: str
    types: frozenset[str]
    purposes: frozenset[str] | None  # None: every purpose
    direction: str
    until: date | None = None

    def covers(self, direction: str, peer: str, typ: str, purpose: str | None) -> bool:
        return (
            self.peer == peer
            and self.direction in (direction, "both")
            and typ in self.types
            and (self.purposes is None or purpose in self.purposes)
        )


@dataclass(frozen=True)
class MinimiseRule:
    id: str
    audience: frozenset[str]
    types: frozenset[str] | None  # None: every type
    drop: tuple[str, ...]


BUILT_IN_RULES = (
    MinimiseRule(
        id="ngo-no-suspect-data",
        audience=frozenset({"ngo"}),
        types=None,
        drop=("**.subjects[category=suspect]", "**.subjects[category=convicted]"),
    ),
)


@dataclass(frozen=True)
class Policy:
    source: str
    agreements: tuple[Agreement, ...] = ()
    minimise_rules: tuple[MinimiseRule, ...] = BUILT_IN_RULES
    retention: Mapping[str, int] = field(default_factory=dict)
    open: bool = False
    agencies: tuple[LocalAgency, ...] = ()
    routes: tuple[Route, ...] = ()

    # -- routing (gateway/routing.py) -------------------------------------------

    @property
    def routing(self) -> bool:
        """Whether received messages are routed (the policy lists local agencies)."""
        return bool(self.agencies)

    def destinations(self, typ: str, body: Mapping[str, Any]) -> list[tuple[str, str]]:
        return destinations(self.agencies, self.routes, typ, dict(body))

    def agency_type(self, agency: str) -> str | None:
        return next((a.type for a in self.agencies if a.id == agency), None)

    # -- agreements ------------------------------------------------------------

    def decide(
        self, direction: str, peer: str, typ: str, purpose: str | None, now: int
    ) -> Decision:
        """May a ``typ`` message for ``purpose`` go to (``send``) or come from
        (``receive``) ``peer``?"""
        if self.open:
            return Decision(True, "no-policy", "this node has no policy file: exchange is open")
        today = datetime.fromtimestamp(now, UTC).date()
        expired = None
        for agreement in self.agreements:
            if agreement.covers(direction, peer, typ, purpose):
                if agreement.until is not None and today > agreement.until:
                    expired = agreement
                    continue
                return Decision(
                    True,
                    f"agreement:{agreement.id}",
                    f"agreement {agreement.id} with {peer} covers {typ} for {purpose}",
                )
        if expired is not None:
            return Decision(
                False,
                f"agreement:{expired.id}",
                f"agreement {expired.id} with {peer} ended on {expired.until}",
            )
        way = "to" if direction == "send" else "from"
        return Decision(
            False,
            "no-agreement",
            f"no agreement of this node allows {typ} for purpose {purpose} {way} {peer}",
        )

    def decide_for(
        self, direction: str, peer: str, typ: str, body: Mapping[str, Any], now: int
    ) -> Decision:
        """``decide`` for a message body: a withdrawal carries no data and may always
        reach the recipients of what it withdraws, even after an agreement ended. A
        correction carries a whole body of the type it corrects, with its own purpose:
        an agreement must allow that type and purpose too, or a correction (of a
        message that never came) would carry what no agreement allows."""
        if typ == CORRECTION and body.get("action") == "withdraw":
            return Decision(
                True, "withdrawal", "a withdrawal always reaches the recipients of the original"
            )
        decision = self.decide(direction, peer, typ, body.get("purpose"), now)
        carried = body.get("body") if typ == CORRECTION else None
        if decision.allowed and isinstance(carried, Mapping):
            corrected = str(body.get("refers_to_type"))
            inner = self.decide(direction, peer, corrected, carried.get("purpose"), now)
            if not inner.allowed:
                return Decision(
                    False,
                    inner.rule,
                    f"the corrected {corrected} it carries: {inner.reason}",
                    carried=(corrected, carried.get("purpose")),
                )
        return decision

    # -- minimisation ----------------------------------------------------------

    def minimise(
        self, typ: str, body: Mapping[str, Any], audience: str | None
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The body without what ``audience`` may not receive, and the (rule, path)
        pairs that removed something."""
        result = copy.deepcopy(dict(body))
        removed: list[tuple[str, str]] = []
        if audience is None:
            return result, removed
        self._minimise_in_place(typ, result, audience, removed)
        inner = result.get("body") if typ == CORRECTION else None
        if isinstance(inner, dict) and isinstance(result.get("refers_to_type"), str):
            # The corrected body is minimised as a message of the corrected type.
            self._minimise_in_place(result["refers_to_type"], inner, audience, removed)
        return result, removed

    def _minimise_in_place(
        self, typ: str, body: dict[str, Any], audience: str, removed: list[tuple[str, str]]
    ) -> None:
        for rule in self.minimise_rules:
            if audience not in rule.audience or (rule.types is not None and typ not in rule.types):
                continue
            for path in rule.drop:
                anywhere = path.startswith(field_paths.ANYWHERE)
                segments = field_paths.parse(path.removeprefix(field_paths.ANYWHERE))
                if (field_paths.drop_anywhere if anywhere else field_paths.drop)(body, segments):
                    if (rule.id, path) not in removed:
                        removed.append((rule.id, path))

    # -- retention -------------------------------------------------------------

    def refused_retention_days(self) -> int:
        """How long the bytes of a refused envelope are kept (``[retention] refused``)."""
        return self.retention.get(REFUSED, REFUSED_RETENTION_DAYS)

    def retention_days(self, typ: str, body: Mapping[str, Any] | None) -> int:
        """How long a message is kept: the body's ``retention_days``, capped by this
        node's limit for its type (or the standard's maximum)."""
        cap = self.retention.get(typ, MAX_RETENTION_DAYS)
        corrected = body.get("refers_to_type") if body and typ == CORRECTION else None
        if isinstance(corrected, str):  # a correction holds its original's kind of data
            cap = min(cap, self.retention.get(corrected, MAX_RETENTION_DAYS))
        wanted = body.get("retention_days") if body else None
        return min(cap, wanted) if isinstance(wanted, int) and wanted > 0 else cap


# -- loading -------------------------------------------------------------------


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError("policy-invalid", f"{path}: {message}")


def _strings(path: Path, where: str, value: object, allowed: Any = None) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(path, f"{where} must be a non-empty list of strings")
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise _fail(path, f"{where} has unknown values {unknown}")
    return frozenset(value)


def _rule_id(path: Path, where: str, table: Mapping[str, Any], seen: set[str]) -> str:
    rule = table.get("id")
    if not isinstance(rule, str) or not _RULE_ID.match(rule):
        raise _fail(path, f"{where} needs an id of letters, digits, '.', '_' or '-'")
    if rule in seen:
        raise _fail(path, f"{where}: id {rule!r} is used twice")
    seen.add(rule)
    return rule


def _kind(value: object) -> str:
    """What a TOML value is, in the words of ``docs/policy.md``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, dict):
        return "a single table"
    if isinstance(value, list):
        return "a list of values"
    return f"a {type(value).__name__}"  # a date or time


def _tables(path: Path, data: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
    """The ``[[section]]`` tables of the file (none if absent); anything else written
    under that name (``agreement = 5``, a single ``[agreement]`` table, a list of
    values) is refused, naming the section."""
    tables = data.get(section, [])
    if not isinstance(tables, list):
        raise _fail(
            path,
            f"{section} must be written as [[{section}]] tables, one per rule, "
            f"not as {_kind(tables)}",
        )
    for i, table in enumerate(tables):
        if not isinstance(table, dict):
            raise _fail(
                path,
                f"{section} #{i + 1} must be a table [[{section}]], not {_kind(table)}",
            )
    return tables


def _types(path: Path, where: str, value: object) -> frozenset[str]:
    types = _strings(path, where, value)
    bad = sorted(t for t in types if not TYP_RE.match(t))
    if bad:
        raise _fail(path, f"{where} has values that are not message types like alert/1: {bad}")
    _standard_types(path, where, types)
    return types


def _standard_types(path: Path, where: str, types: frozenset[str]) -> None:
    """A type the standard does not define would make a rule that never applies (a
    minimisation rule for "alerts/1" removes nothing, silently)."""
    unknown = sorted(types - MESSAGE_TYPES.keys())
    if unknown:
        raise _fail(
            path,
            f"{where} names types the standard does not define: {unknown}; the types are "
            f"{', '.join(sorted(MESSAGE_TYPES))}",
        )


def _named_fields(
    path: Path, where: str, drop: frozenset[str], types: frozenset[str] | None
) -> None:
    """A drop path that names no member of the rule's types would remove nothing,
    silently: the field it was meant to keep in would leave the state."""
    for field_path in sorted(drop):
        reason = field_paths.problem(field_path, types)
        if reason is not None:
            scope = "any message type" if types is None else ", ".join(sorted(types))
            raise _fail(
                path,
                f"{where}: drop path {field_path!r} names nothing in {scope}: {reason} "
                "(the members are listed in docs/standard.md)",
            )


def parse(text: str, path: Path) -> Policy:
    """Parse and check a policy file; every mistake is a ``policy-invalid`` error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _fail(path, f"not valid TOML: {e}") from e
    except RecursionError as e:
        raise _fail(path, "arrays or tables nested too deeply to read") from e
    unknown = set(data) - {"version", "agreement", "minimise", "retention", "agency", "route"}
    if unknown:
        raise _fail(path, f"unknown sections {sorted(unknown)}")
    version = data.get("version")
    # Exactly the integer 1: TOML 1.0 and true are equal to 1 in Python, but are not 1.
    if type(version) is not int or version != 1:
        raise _fail(path, "must start with version = 1 (the whole number 1)")
    seen: set[str] = set()
    agreements = []
    for i, table in enumerate(_tables(path, data, "agreement")):
        where = f"agreement #{i + 1}"
        extra = set(table) - {"id", "peer", "types", "purposes", "direction", "until"}
        if extra:
            raise _fail(path, f"{where} has unknown keys {sorted(extra)}")
        rule = _rule_id(path, where, table, seen)
        peer = table.get("peer")
        if not isinstance(peer, str) or not NODE_RE.match(peer):
            raise _fail(path, f"{where} ({rule}): peer must be a node id such as KG")
        direction = table.get("direction", "both")
        if direction not in DIRECTIONS:
            raise _fail(path, f"{where} ({rule}): direction must be send, receive or both")
        until = table.get("until")
        if until is not None and (not isinstance(until, date) or isinstance(until, datetime)):
            raise _fail(path, f"{where} ({rule}): until must be a date such as 2027-12-31")
        purposes = table.get("purposes")
        agreements.append(
            Agreement(
                id=rule,
                peer=peer,
                types=_types(path, f"{where} ({rule}) types", table.get("types")),
                purposes=None
                if purposes in (None, ["*"])
                else _strings(path, f"{where} ({rule}) purposes", purposes, PURPOSES),
                direction=direction,
                until=until,
            )
        )
    rules = list(BUILT_IN_RULES)
    seen.update(r.id for r in BUILT_IN_RULES)
    for i, table in enumerate(_tables(path, data, "minimise")):
        where = f"minimise #{i + 1}"
        extra = set(table) - {"id", "audience", "types", "drop"}
        if extra:
            raise _fail(path, f"{where} has unknown keys {sorted(extra)}")
        rule = _rule_id(path, where, table, seen)
        drop = _strings(path, f"{where} ({rule}) drop", table.get("drop"))
        bad = sorted(p for p in drop if not field_paths.PATH.match(p))
        if bad:
            raise _fail(
                path,
                f"{where} ({rule}): {bad} are not field paths such as "
                "'subjects[category=suspect]' or 'subjects[*].date_of_birth'",
            )
        types = table.get("types")
        rule_types = None if types is None else _types(path, f"{where} ({rule}) types", types)
        _named_fields(path, f"{where} ({rule})", drop, rule_types)
        rules.append(
            MinimiseRule(
                id=rule,
                audience=_strings(
                    path, f"{where} ({rule}) audience", table.get("audience"), AGENCY_TYPES
                ),
                types=rule_types,
                drop=tuple(sorted(drop)),
            )
        )
    retention = data.get("retention", {})
    if not isinstance(retention, dict):
        raise _fail(path, "[retention] must be a table of message type = days")
    for typ, days in retention.items():
        if typ != REFUSED and not TYP_RE.match(typ):
            raise _fail(
                path,
                f"[retention] key {typ!r} is neither a message type like alert/1 "
                f"nor {REFUSED!r} (refused envelopes)",
            )
        if typ != REFUSED:
            _standard_types(path, "[retention]", frozenset({typ}))
        if (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 1 <= days <= MAX_RETENTION_DAYS
        ):
            raise _fail(
                path, f"[retention] {typ} must be a whole number of days, 1 to {MAX_RETENTION_DAYS}"
            )
    agencies = _agencies(path, _tables(path, data, "agency"))
    return Policy(
        source=str(path),
        agreements=tuple(agreements),
        minimise_rules=tuple(rules),
        retention=dict(retention),
        agencies=agencies,
        routes=_routes(path, _tables(path, data, "route"), {a.id for a in agencies}, seen),
    )


_AGENCY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")
_SUBDIVISION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,3}\Z")


def _agencies(path: Path, tables: list[dict[str, Any]]) -> tuple[LocalAgency, ...]:
    found: dict[str, LocalAgency] = {}
    for i, table in enumerate(tables):
        where = f"agency #{i + 1}"
        if set(table) - {"id", "type", "name"}:
            raise _fail(path, f"{where} has unknown keys; it takes id, type and name")
        agency_id, kind = table.get("id"), table.get("type")
        if not isinstance(agency_id, str) or not _AGENCY_ID.match(agency_id):
            raise _fail(path, f"{where}: id must be like kg-police (lowercase, digits, '-')")
        if kind not in AGENCY_TYPES:
            raise _fail(
                path, f"{where} ({agency_id}): type must be one of {', '.join(AGENCY_TYPES)}"
            )
        if "name" in table and not isinstance(table["name"], str):
            raise _fail(path, f"{where} ({agency_id}): name must be a text in quotes")
        if agency_id in found:
            raise _fail(path, f"{where}: agency {agency_id} is listed twice")
        found[agency_id] = LocalAgency(agency_id, kind)
    if found and not any(a.type == "central-authority" for a in found.values()):
        raise _fail(
            path,
            "a policy that lists agencies routes received messages, and what no route "
            "names goes to its central-authority agencies: list at least one "
            '[[agency]] with type = "central-authority", or nothing would see it',
        )
    return tuple(found.values())


def _routes(
    path: Path, tables: list[dict[str, Any]], agencies: set[str], seen: set[str]
) -> tuple[Route, ...]:
    if tables and not agencies:
        raise _fail(path, "routes need the local agencies they name, listed as [[agency]]")
    routes = []
    for i, table in enumerate(tables):
        where = f"route #{i + 1}"
        extra = set(table) - {"id", "types", "kinds", "regions", "agencies"}
        if extra:
            raise _fail(path, f"{where} has unknown keys {sorted(extra)}")
        rule = _rule_id(path, where, table, seen)
        named = _strings(path, f"{where} ({rule}) agencies", table.get("agencies"))
        unknown = sorted(named - agencies)
        if unknown:
            raise _fail(
                path, f"{where} ({rule}) names agencies not listed as [[agency]]: {unknown}"
            )
        regions = table.get("regions")
        if regions is not None:
            regions = _strings(path, f"{where} ({rule}) regions", regions)
            bad = sorted(r for r in regions if not _SUBDIVISION.match(r))
            if bad:
                raise _fail(path, f"{where} ({rule}): {bad} are not ISO 3166-2 codes like KG-C")
        types = _types(path, f"{where} ({rule}) types", table.get("types"))
        kinds = table.get("kinds")
        if kinds is not None:
            kinds = _strings(path, f"{where} ({rule}) kinds", kinds)
            _kinds_of(path, f"{where} ({rule})", kinds, types)
        routes.append(
            Route(
                id=rule,
                types=types,
                kinds=kinds,
                regions=regions,
                agencies=tuple(sorted(named)),
            )
        )
    return tuple(routes)


def _kinds_of(path: Path, where: str, kinds: frozenset[str], types: frozenset[str]) -> None:
    """A kind that none of the route's types has would make a route that never
    applies (its messages would go to the default agency instead)."""
    values = field_paths.values_of(types, "kind")
    if not values:
        raise _fail(
            path,
            f"{where}: kinds given, but no message of {', '.join(sorted(types))} has a kind "
            "(alert/1 has)",
        )
    if any(allowed is None for allowed in values.values()):
        return
    known = frozenset().union(*(allowed or () for allowed in values.values()))
    unknown = sorted(kinds - known)
    if unknown:
        raise _fail(
            path,
            f"{where}: kinds {unknown} are not kinds of {', '.join(sorted(values))}; "
            f"the kinds are {', '.join(sorted(known))}",
        )


def read(path: Path) -> str:
    """The text of a policy file; a file that is not UTF-8 text is ``policy-invalid``
    (a missing or unreadable file raises the ``OSError``)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _fail(
            path,
            f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
            "save the file as UTF-8",
        ) from e


def load(instance: str | Path) -> Policy:
    """The policy of the node in ``instance``; open (with a warning) if it has none."""
    path = Path(instance) / POLICY_FILE
    try:
        text = read(path)
    except FileNotFoundError:
        log.warning(
            "no %s in %s: every exchange with every member is allowed; write the node's "
            "bilateral agreements there (docs/policy.md)",
            POLICY_FILE,
            instance,
        )
        return Policy(source="", open=True)
    except OSError as e:
        raise ConfigError("policy-invalid", f"cannot read {path}: {e}") from e
    return parse(text, path)
