"""The ``referral/1`` message: a victim of trafficking referred across the border
for assistance and return, after the ICMPD Transnational Referral Mechanism.

A referral moves through the stages ``identification`` → ``first-assistance``
→ ``return`` → ``social-inclusion``; each stage may be sent again as the case
moves on. It carries the victim (a person of category ``victim``), the victim's
recorded, revocable consent, and only the data the consent covers.

Consent and minimal sharing. ``consent.scope`` lists the data categories the
victim agreed to share (``CONSENT_SCOPES``); a referral carrying data of a
category outside the scope is invalid, at the field that carries it:

========================= =====================================================
category                  members it covers
========================= =====================================================
identity (always needed)  victim names, sex, birth, nationalities, identities,
                          victim statement
documents                 victim documents (also inside identities)
contact                   contact_channels (the victim's own phone, messenger)
circumstances             circumstances, events, locations, victim description
risk                      risk_assessment
needs                     needs and requested_services, except health ones
health                    needs and requested services in health areas
                          (medical, psychological), special-category data
========================= =====================================================

``consent.recipients`` lists the agency types the victim agreed may receive the
data; the receiving service must be one of them. A consent with
``withdrawn_at`` may only be sent to tell the recipients that it was withdrawn:
such a referral carries the victim's identity (so the recipient can find and
erase its records) and nothing else the scope would have allowed.

Other rules: ``return`` needs ``handover`` details (unless consent was
withdrawn); the capacity request's ``respond_by`` and the handover time lie
after ``referred_at``.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validates_schema

from .common import (
    AGENCY_TYPES,
    PURPOSES,
    AgencySchema,
    ChannelSchema,
    Code,
    EventSchema,
    JsonSchemaRules,
    Language,
    LocationSchema,
    MessageBodySchema,
    StatementSchema,
    StrictList,
    StrictSchema,
    SubjectSchema,
    Text,
    UnixTime,
    about,
    local_reference_errors,
)

STAGES = ("identification", "first-assistance", "return", "social-inclusion")

CONSENT_SCOPES: Mapping[str, str] = MappingProxyType(
    {
        "identity": "names, sex, birth, nationality, further identities of the victim",
        "documents": "the victim's identity and travel documents",
        "contact": "the victim's own phone numbers and messenger accounts",
        "circumstances": "what happened to the victim: account, events, places",
        "risk": "the risk assessment",
        "needs": "assistance needs and requested services (other than health)",
        "health": "physical and mental health needs (special-category data)",
    }
)
CONSENT_FORMS = ("written", "oral-recorded")

#: Areas of assistance, for needs and requested services.
ASSISTANCE_AREAS: Mapping[str, str] = MappingProxyType(
    {
        "accommodation": "safe accommodation or shelter",
        "medical": "medical care",
        "psychological": "psychological support or counselling",
        "legal": "legal counselling and representation",
        "interpretation": "interpretation",
        "travel-documents": "new identity or travel documents",
        "escort": "escort during travel",
        "family-tracing": "tracing and contacting family",
        "child-protection": "guardian or child-protection measures",
        "financial": "financial or material support",
        "education": "education or vocational training",
        "employment": "help to find work",
        "security": "protection from traffickers",
    }
)
HEALTH_AREAS = frozenset({"medical", "psychological"})

RISK_LEVELS = ("low", "medium", "high")
RISK_FACTORS: Mapping[str, str] = MappingProxyType(
    {
        "re-trafficking": "risk of being trafficked again",
        "retaliation": "threats or violence by traffickers",
        "family-involvement": "family members were involved in the trafficking",
        "debt-bondage": "a debt the victim is pressed to repay",
        "stigma": "rejection by family or community",
        "health": "an untreated health condition",
        "self-harm": "risk of self-harm",
        "prosecution-of-victim": "risk of being punished for acts the victim was forced into",
    }
)


class ConsentSchema(StrictSchema):
    """The victim's recorded consent: what may be shared, with whom, for what."""

    given_at = UnixTime(required=True, metadata=about("When the victim gave consent."))
    form = Code(CONSENT_FORMS, required=True)
    language = Language(metadata=about("Language the consent was explained in."))
    scope = StrictList(
        Code(tuple(CONSENT_SCOPES)),
        min_items=1,
        max_items=len(CONSENT_SCOPES),
        required=True,
        metadata=about("Data categories the victim agreed to share."),
    )
    recipients = StrictList(
        Code(tuple(AGENCY_TYPES)),
        min_items=1,
        max_items=len(AGENCY_TYPES),
        required=True,
        metadata=about("Agency types the victim agreed may receive the data."),
    )
    purposes = StrictList(Code(PURPOSES), min_items=1, max_items=len(PURPOSES), required=True)
    withdrawn_at = UnixTime(metadata=about("When the victim withdrew consent."))

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {"properties": {"scope": {"uniqueItems": True, "contains": {"const": "identity"}}}},
        {"properties": {"recipients": {"uniqueItems": True}, "purposes": {"uniqueItems": True}}},
    )
    rules_beyond_json_schema = ("withdrawn_at is not before given_at.",)

    @validates_schema
    def _consent_is_coherent(self, data: dict[str, Any], **kwargs: Any) -> None:
        for member in ("scope", "recipients", "purposes"):
            if len(set(data[member])) != len(data[member]):
                raise ValidationError("Each entry may appear once.", member)
        if "identity" not in data["scope"]:
            raise ValidationError(
                "A referral needs consent to share the victim's identity.", "scope"
            )
        if data.get("withdrawn_at", data["given_at"]) < data["given_at"]:
            raise ValidationError(
                "Consent cannot be withdrawn before it was given.", "withdrawn_at"
            )


class RiskAssessmentSchema(StrictSchema):
    """The sending service's assessment of the risks to the victim."""

    level = Code(RISK_LEVELS, required=True)
    factors = StrictList(Code(tuple(RISK_FACTORS)), min_items=1, max_items=len(RISK_FACTORS))
    assessed_at = UnixTime(required=True)
    summary = Text(max_length=2000, multiline=True)


class RequestedServiceSchema(StrictSchema):
    """A service asked of the receiving side."""

    area = Code(tuple(ASSISTANCE_AREAS), required=True)
    note = Text(max_length=1000, multiline=True)


class CapacityRequestSchema(StrictSchema):
    """Asks the receiving service to confirm it can take the victim and provide the services."""

    respond_by = UnixTime(required=True)
    note = Text(max_length=1000, multiline=True)


class HandoverSchema(StrictSchema):
    """When, where and how the victim is handed over to the receiving service."""

    planned_at = UnixTime(required=True)
    location = fields.Nested(LocationSchema, required=True)
    transport = Text(max_length=500, metadata=about("Flight, train or road, and its number."))
    escort = Code(tuple(AGENCY_TYPES), metadata=about("Agency type escorting the victim."))
    contact = fields.Nested(ChannelSchema, metadata=about("Contact for the handover."))


# Members of the referral and of its victim, and the consent category each needs.
_BODY_SCOPES: Mapping[str, str] = MappingProxyType(
    {
        "contact_channels": "contact",
        "circumstances": "circumstances",
        "events": "circumstances",
        "locations": "circumstances",
        "risk_assessment": "risk",
    }
)
_VICTIM_SCOPES: Mapping[str, str] = MappingProxyType({"description": "circumstances"})
# What a notice of withdrawn consent may carry besides the common body.
_WITHDRAWAL_MEMBERS = frozenset(
    {
        *MessageBodySchema().fields,
        "stage",
        "case_reference",
        "referred_at",
        "referring_agency",
        "receiving_agency",
        "victim",
        "consent",
    }
)


def _scope_lacks(category: str) -> dict[str, Any]:
    """JSON Schema: the consent's scope does not include ``category``."""
    return {
        "required": ["consent"],
        "properties": {
            "consent": {
                "required": ["scope"],
                "properties": {"scope": {"not": {"contains": {"const": category}}}},
            }
        },
    }


def _needs_in(area: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema properties: every need and requested service's area satisfies ``area``."""
    return {
        "needs": {"items": area},
        "requested_services": {"items": {"properties": {"area": area}}},
    }


_NO_DOCUMENTS: dict[str, Any] = {
    "not": {"required": ["documents"]},
    "properties": {"identities": {"items": {"not": {"required": ["documents"]}}}},
}


class ReferralSchema(MessageBodySchema):
    """Body of ``referral/1``."""

    stage = Code(STAGES, required=True, metadata=about("Stage of the referral mechanism."))
    case_reference = Text(max_length=100, metadata=about("The sending service's case number."))
    referred_at = UnixTime(required=True)
    referring_agency = fields.Nested(AgencySchema, required=True)
    receiving_agency = fields.Nested(AgencySchema, required=True)
    victim = fields.Nested(SubjectSchema, required=True, metadata=about("Category victim."))
    consent = fields.Nested(ConsentSchema, required=True)
    contact_channels = StrictList(
        fields.Nested(ChannelSchema),
        min_items=1,
        max_items=10,
        metadata=about("The victim's own phone and messenger accounts."),
    )
    circumstances = fields.Nested(
        StatementSchema, metadata=about("What happened to the victim, evaluated.")
    )
    locations = StrictList(fields.Nested(LocationSchema), min_items=1, max_items=20)
    events = StrictList(fields.Nested(EventSchema), min_items=1, max_items=50)
    risk_assessment = fields.Nested(RiskAssessmentSchema)
    needs = StrictList(Code(tuple(ASSISTANCE_AREAS)), min_items=1, max_items=len(ASSISTANCE_AREAS))
    requested_services = StrictList(
        fields.Nested(RequestedServiceSchema), min_items=1, max_items=len(ASSISTANCE_AREAS)
    )
    capacity_request = fields.Nested(CapacityRequestSchema)
    handover = fields.Nested(HandoverSchema)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {"properties": {"victim": {"properties": {"category": {"const": "victim"}}}}},
        {"properties": {"needs": {"uniqueItems": True}}},
        {
            "if": {
                "required": ["stage", "consent"],
                "properties": {
                    "stage": {"const": "return"},
                    "consent": {"not": {"required": ["withdrawn_at"]}},
                },
            },
            "then": {"required": ["handover"]},
        },
        *(
            {"if": _scope_lacks(category), "then": {"not": {"required": [member]}}}
            for member, category in _BODY_SCOPES.items()
        ),
        {
            "if": _scope_lacks("circumstances"),
            "then": {"properties": {"victim": {"not": {"required": ["description"]}}}},
        },
        {"if": _scope_lacks("documents"), "then": {"properties": {"victim": _NO_DOCUMENTS}}},
        {
            "if": _scope_lacks("health"),
            "then": {"properties": _needs_in({"not": {"enum": sorted(HEALTH_AREAS)}})},
        },
        {
            "if": _scope_lacks("needs"),
            "then": {"properties": _needs_in({"enum": sorted(HEALTH_AREAS)})},
        },
        {
            "if": {
                "required": ["consent"],
                "properties": {"consent": {"required": ["withdrawn_at"]}},
            },
            "then": {
                "propertyNames": {"enum": sorted(_WITHDRAWAL_MEMBERS)},
                "properties": {
                    "victim": {
                        **_NO_DOCUMENTS,
                        "not": {
                            "anyOf": [{"required": ["documents"]}, {"required": ["description"]}]
                        },
                    }
                },
            },
        },
    )
    rules_beyond_json_schema = (
        "receiving_agency.type is one of consent.recipients and purpose one of consent.purposes.",
        "capacity_request.respond_by and handover.planned_at lie after referred_at.",
        "Entity ids are unique and events refer to the victim and the locations of the message "
        "(the id of a contact channel, the handover location or contact is not an entity's).",
    )

    @validates_schema
    def _victim_is_a_victim(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["victim"]["category"] != "victim":
            raise ValidationError(
                {"victim": {"category": ["The person referred has category 'victim'."]}}
            )

    @validates_schema
    def _stages_and_times_fit(self, data: dict[str, Any], **kwargs: Any) -> None:
        if len(set(data.get("needs", ()))) != len(data.get("needs", ())):
            raise ValidationError("Each need may appear once.", "needs")
        withdrawn = "withdrawn_at" in data["consent"]
        if data["stage"] == "return" and "handover" not in data and not withdrawn:
            raise ValidationError("A return referral gives the handover details.", "handover")
        referred_at = data["referred_at"]
        if data.get("capacity_request", {}).get("respond_by", referred_at + 1) <= referred_at:
            raise ValidationError(
                {"capacity_request": {"respond_by": ["Must lie after referred_at."]}}
            )
        if data.get("handover", {}).get("planned_at", referred_at + 1) <= referred_at:
            raise ValidationError({"handover": {"planned_at": ["Must lie after referred_at."]}})

    @validates_schema
    def _consent_covers_what_is_sent(self, data: dict[str, Any], **kwargs: Any) -> None:
        consent = data["consent"]
        errors: dict[str | int, Any] = {}
        if data["receiving_agency"]["type"] not in consent["recipients"]:
            errors["receiving_agency"] = {
                "type": ["The victim did not consent to this agency type receiving the data."]
            }
        if data["purpose"] not in consent["purposes"]:
            errors["purpose"] = ["The victim did not consent to this purpose."]
        if "withdrawn_at" in consent:
            for member in data.keys() - _WITHDRAWAL_MEMBERS:
                errors[member] = ["Consent was withdrawn: send only the victim's identity."]
            victim_errors = _outside_scope(data, {"identity"}).get("victim")
            if victim_errors:
                errors["victim"] = victim_errors
        else:
            errors.update(_outside_scope(data, set(consent["scope"])))
        if errors:
            raise ValidationError(errors)

    @validates_schema
    def _local_references_resolve(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = local_reference_errors(data)
        if errors:
            raise ValidationError(errors)


def _outside_scope(data: dict[str, Any], scope: set[str]) -> dict[str | int, Any]:
    """Errors for every member whose data category the consent does not cover."""
    errors: dict[str | int, Any] = {}

    def refuse(category: str) -> list[str]:
        return [f"The victim did not consent to share '{category}' data (consent.scope)."]

    for member, category in _BODY_SCOPES.items():
        if member in data and category not in scope:
            errors[member] = refuse(category)
    victim = data["victim"]
    victim_errors: dict[str | int, Any] = {}
    for member, category in _VICTIM_SCOPES.items():
        if member in victim and category not in scope:
            victim_errors[member] = refuse(category)
    if "documents" not in scope:
        if "documents" in victim:
            victim_errors["documents"] = refuse("documents")
        for index, identity in enumerate(victim.get("identities", ())):
            if "documents" in identity:
                victim_errors.setdefault("identities", {})[index] = {
                    "documents": refuse("documents")
                }
    if victim_errors:
        errors["victim"] = victim_errors
    for member, areas in (
        ("needs", [(i, area) for i, area in enumerate(data.get("needs", ()))]),
        (
            "requested_services",
            [(i, s["area"]) for i, s in enumerate(data.get("requested_services", ()))],
        ),
    ):
        for index, area in areas:
            category = "health" if area in HEALTH_AREAS else "needs"
            if category not in scope:
                where = errors.setdefault(member, {})
                if member == "requested_services":
                    where[index] = {"area": refuse(category)}
                else:
                    where[index] = refuse(category)
    return errors
