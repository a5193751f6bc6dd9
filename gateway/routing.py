"""Routing received messages to the local agencies that should see them.

The node's policy file lists its agencies and routing rules (``docs/policy.md``):

.. code-block:: toml

    [[agency]]
    id = "kg-police"
    type = "police"

    [[route]]
    id = "trafficking-alerts-chui"
    types = ["alert/1"]
    kinds = ["trafficked-person", "missing-person"]   # optional: the body's kind
    regions = ["KG-C", "KG-GB"]                      # optional: ISO 3166-2 of a location
    agencies = ["kg-police"]

A message goes to the agencies of every rule that matches it; when none
matches, to the node's ``central-authority`` agencies (rule
``default-central-authority``), so nothing received is left unseen. The routes
are decided once, when the message is accepted, and stored with the rule that
chose each agency; an agency's inbox shows only what was routed to it, and a
correction or withdrawal goes to every agency the original went to.

A node whose policy lists no agencies does not route: every agency token reads
every received message its role may read (the behaviour before routing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.common import json_objects

DEFAULT_RULE = "default-central-authority"


@dataclass(frozen=True)
class LocalAgency:
    id: str
    type: str


@dataclass(frozen=True)
class Route:
    id: str
    types: frozenset[str]
    kinds: frozenset[str] | None
    regions: frozenset[str] | None
    agencies: tuple[str, ...]

    def matches(self, typ: str, body: dict[str, Any]) -> bool:
        if typ not in self.types:
            return False
        if self.kinds is not None and body.get("kind") not in self.kinds:
            return False
        return self.regions is None or not self.regions.isdisjoint(regions_of(body))


def regions_of(body: dict[str, Any]) -> set[str]:
    """Every ISO 3166-2 ``subdivision`` named anywhere in the body (locations)."""
    return {
        value for node in json_objects(body) if isinstance(value := node.get("subdivision"), str)
    }


def destinations(
    agencies: tuple[LocalAgency, ...], routes: tuple[Route, ...], typ: str, body: dict[str, Any]
) -> list[tuple[str, str]]:
    """(agency, rule) pairs for a received message, each agency once (first rule wins)."""
    chosen: dict[str, str] = {}
    for route in routes:
        if route.matches(typ, body):
            for name in route.agencies:
                chosen.setdefault(name, route.id)
    if not chosen:
        for local in agencies:
            if local.type == "central-authority":
                chosen.setdefault(local.id, DEFAULT_RULE)
    return sorted(chosen.items())
