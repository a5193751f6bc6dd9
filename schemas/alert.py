"""The ``alert/1`` message: a missing or trafficked person, a wanted suspect, a
modus operandi or an online recruitment channel, sent to one or more peers.

Alert kinds map to INTERPOL notice colours so that an alert can be turned into
(or matched with) a notice request:

===================== ==================================================
kind                  colour
===================== ==================================================
missing-person        yellow
trafficked-person     yellow (a victim who may be missing or unidentified)
wanted-suspect        red when ``sought_for`` is ``arrest``; blue when it is
                      ``locate`` or ``information``
modus-operandi        purple
recruitment-channel   purple: a recruitment channel is a method and device
                      used by offenders, which is what purple notices cover
===================== ==================================================

Cross-field rules (beyond the per-field ones of ``schemas.common``):

1. ``sought_for`` is required for a wanted-suspect alert and absent otherwise.
2. A recruitment-channel alert names at least one channel.
3. A missing-person or trafficked-person alert has a subject of category
   ``victim``.
4. A wanted-suspect alert has a subject of category ``suspect`` or
   ``convicted`` (red notices also seek convicted persons to serve a sentence).
5. Handling H3 states its restriction, and TLP CLEAR is not combined with H2 or
   H3 (``MessageBodySchema``, ``HandlingSchema``).

Subjects are optional for modus-operandi and recruitment-channel alerts, which
often name no person; rules 3 and 4 make them required for the others.

Besides persons (``subjects``), locations and channels, an alert may carry the
other entities of the standard (organisations, documents, vehicles, accounts,
events and links between them; ``schemas.common.EntitySetSchema``), with local
ids that must resolve. Every member added since the first alerts is optional,
so every alert valid before stays valid.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from marshmallow import ValidationError, validates_schema

from .common import (
    Code,
    EntitySetSchema,
    EvaluatedSchema,
    JsonSchemaRules,
    MessageBodySchema,
    Text,
    UnixTime,
    about,
)

ALERT_KINDS = (
    "missing-person",
    "trafficked-person",
    "wanted-suspect",
    "modus-operandi",
    "recruitment-channel",
)
#: What a wanted-suspect alert asks for.
SOUGHT_FOR = ("arrest", "locate", "information")

#: INTERPOL notice colour of each alert kind (wanted-suspect: see below).
INTERPOL_NOTICE_COLOURS: Mapping[str, str] = MappingProxyType(
    {
        "missing-person": "yellow",
        "trafficked-person": "yellow",
        "wanted-suspect": "red",
        "modus-operandi": "purple",
        "recruitment-channel": "purple",
    }
)
#: A wanted-suspect alert is red only when arrest is sought.
WANTED_SUSPECT_COLOURS: Mapping[str, str] = MappingProxyType(
    {"arrest": "red", "locate": "blue", "information": "blue"}
)

_NEEDS_CATEGORY: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "missing-person": ("victim",),
        "trafficked-person": ("victim",),
        "wanted-suspect": ("suspect", "convicted"),
    }
)


def interpol_colour(alert: Mapping[str, Any]) -> str:
    """The INTERPOL notice colour of a valid alert body."""
    if alert["kind"] == "wanted-suspect":
        return WANTED_SUSPECT_COLOURS[alert["sought_for"]]
    return INTERPOL_NOTICE_COLOURS[alert["kind"]]


class AlertSchema(MessageBodySchema, EvaluatedSchema, EntitySetSchema):
    """Body of ``alert/1``.

    ``nature``, ``reliability`` and ``accuracy`` evaluate the alert as a whole.
    """

    kind = Code(ALERT_KINDS, required=True, metadata=about("What the alert is about."))
    sought_for = Code(SOUGHT_FOR, metadata=about("Wanted-suspect alerts: what is sought."))
    title = Text(max_length=200, required=True)
    summary = Text(max_length=4000, multiline=True, required=True)
    reported_at = UnixTime(required=True, metadata=about("When the facts were reported."))

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": "wanted-suspect"}}},
            "then": {"required": ["sought_for"]},
            "else": {"not": {"required": ["sought_for"]}},
        },
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": "recruitment-channel"}}},
            "then": {"required": ["channels"]},
        },
        {
            "if": {
                "required": ["kind"],
                "properties": {"kind": {"enum": ["missing-person", "trafficked-person"]}},
            },
            "then": {
                "required": ["subjects"],
                "properties": {
                    "subjects": {"contains": {"properties": {"category": {"const": "victim"}}}}
                },
            },
        },
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": "wanted-suspect"}}},
            "then": {
                "required": ["subjects"],
                "properties": {
                    "subjects": {
                        "contains": {"properties": {"category": {"enum": ["suspect", "convicted"]}}}
                    }
                },
            },
        },
    )

    @validates_schema
    def _sought_for_only_for_wanted_suspect(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["kind"] == "wanted-suspect" and "sought_for" not in data:
            raise ValidationError(
                "A wanted-suspect alert says what is sought: arrest, locate or information.",
                "sought_for",
            )
        if data["kind"] != "wanted-suspect" and "sought_for" in data:
            raise ValidationError("Only a wanted-suspect alert has sought_for.", "sought_for")

    @validates_schema
    def _recruitment_channel_names_a_channel(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["kind"] == "recruitment-channel" and not data.get("channels"):
            raise ValidationError(
                "A recruitment-channel alert names at least one channel.", "channels"
            )

    @validates_schema
    def _subjects_fit_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        needed = _NEEDS_CATEGORY.get(data["kind"])
        if needed is None:
            return
        categories = {subject["category"] for subject in data.get("subjects", ())}
        if categories.isdisjoint(needed):
            raise ValidationError(
                f"A {data['kind']} alert needs a subject of category {' or '.join(needed)}.",
                "subjects",
            )
