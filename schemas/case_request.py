"""The ``case-request/1`` message: one state's authority asks another for case data.

A request names the requesting authority and its case reference, the legal
basis (common body), the offences (``OFFENCES``, a code list of
trafficking-related offences, each optionally with the national provision),
a summary of the facts, the data sought (a structured list, each entry
optionally pointing at the persons or things it concerns by local id), and a
deadline. The persons and things the request is about travel as entities
(``schemas.common.EntitySetSchema``).

Urgent path: a request with urgency ``urgent`` or ``immediate`` states why
(``urgent_reason``, e.g. a victim's life is at risk); an ``immediate`` request
has a deadline at most 72 hours after it was sent. A request that follows a
hit of a hit/no-hit query cites the query and the reference the hit gave
(``hit``), which is the only way personal data follows a hit.

Rules: the deadline lies after ``requested_at``; a data-sought entry of
category ``other`` describes what is sought.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validates_schema

from .common import (
    AgencySchema,
    Code,
    EntitySetSchema,
    JsonSchemaRules,
    LocalId,
    MessageBodySchema,
    MessageRef,
    PartialDate,
    StatementSchema,
    StrictList,
    StrictSchema,
    Text,
    UnixTime,
    about,
    partial_dates_in_order,
)

#: Trafficking-related offences (UN Trafficking Protocol art. 3, Smuggling
#: Protocol, Organized Crime Convention arts. 5, 6, 23), for matching national
#: provisions across states.
OFFENCES: Mapping[str, str] = MappingProxyType(
    {
        "trafficking-in-persons": "trafficking in persons (adults)",
        "child-trafficking": "trafficking in children",
        "forced-labour": "forced or compulsory labour",
        "sexual-exploitation": "exploitation of the prostitution of others, sexual exploitation",
        "forced-marriage": "forced or servile marriage",
        "organ-removal": "trafficking for the removal of organs",
        "forced-begging": "forced begging",
        "forced-criminality": "exploitation in criminal activities",
        "slavery-servitude": "slavery, practices similar to slavery, servitude",
        "illegal-adoption": "illegal adoption",
        "migrant-smuggling": "smuggling of migrants",
        "document-fraud": "producing, procuring or holding fraudulent travel or identity documents",
        "organised-crime-group": "participation in an organised criminal group",
        "money-laundering": "laundering of the proceeds of crime",
        "obstruction-of-justice": "obstruction of justice (e.g. intimidating witnesses)",
    }
)

#: Kinds of data a request may seek.
DATA_CATEGORIES: Mapping[str, str] = MappingProxyType(
    {
        "identity": "identity data of a person",
        "documents": "identity and travel documents issued or held",
        "border-crossings": "entries and exits at the border",
        "travel-bookings": "tickets and bookings",
        "residence": "registered address and residence permits",
        "employment": "employment and work permits",
        "criminal-records": "convictions and pending proceedings",
        "subscriber-data": "holder of a phone number or online account",
        "traffic-data": "who communicated with whom, when (no content)",
        "financial-records": "account holders and transactions",
        "company-records": "registration, owners and directors of a company",
        "vehicle-records": "registered keeper and movements of a vehicle",
        "witness-statement": "hearing a witness or victim",
        "other": "anything else, described in detail",
    }
)

#: An immediate request may not ask for more than this (seconds).
IMMEDIATE_MAX_DEADLINE = 72 * 3600


class OffenceSchema(StrictSchema):
    """An offence under investigation, by code and optionally the national provision."""

    code = Code(tuple(OFFENCES), required=True)
    national_provision = Text(
        max_length=200, metadata=about("E.g. 'Criminal Code of Kazakhstan, art. 128 part 3'.")
    )


class DataSoughtSchema(StrictSchema):
    """One item of data sought, optionally for a period and about given entities."""

    category = Code(tuple(DATA_CATEGORIES), required=True)
    concerning = StrictList(
        LocalId(),
        min_items=1,
        max_items=50,
        metadata=about("Ids of the persons or things of this request the data concerns."),
    )
    period_start = PartialDate()
    period_end = PartialDate()
    detail = Text(max_length=2000, multiline=True, metadata=about("What exactly is sought."))

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["category"], "properties": {"category": {"const": "other"}}},
            "then": {"required": ["detail"]},
        },
    )
    rules_beyond_json_schema = ("period_end is not before period_start.",)

    @validates_schema
    def _item_is_specific(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["category"] == "other" and "detail" not in data:
            raise ValidationError("Say in detail what is sought.", "detail")
        start, end = data.get("period_start"), data.get("period_end")
        if start and end and not partial_dates_in_order(start, end):
            raise ValidationError("The period ends before it starts.", "period_end")


class HitReferenceSchema(StrictSchema):
    """The hit/no-hit query this request follows and the reference the hit gave."""

    query = MessageRef(required=True, metadata=about("Message id of the hit-query/1."))
    reference = Text(max_length=100, required=True, metadata=about("Reference from the hit."))


class CaseRequestSchema(MessageBodySchema, EntitySetSchema):
    """Body of ``case-request/1``."""

    requesting_authority = fields.Nested(AgencySchema, required=True)
    case_reference = Text(max_length=100, required=True, metadata=about("Requester's case no."))
    requested_at = UnixTime(required=True)
    offences = StrictList(fields.Nested(OffenceSchema), min_items=1, max_items=20, required=True)
    facts = fields.Nested(StatementSchema, required=True, metadata=about("Summary of the facts."))
    data_sought = StrictList(
        fields.Nested(DataSoughtSchema), min_items=1, max_items=50, required=True
    )
    deadline = UnixTime(required=True, metadata=about("Answer wanted by this time."))
    urgent_reason = Text(
        max_length=1000, multiline=True, metadata=about("Why urgent or immediate.")
    )
    hit = fields.Nested(HitReferenceSchema)

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {
                "required": ["urgency"],
                "properties": {"urgency": {"enum": ["urgent", "immediate"]}},
            },
            "then": {"required": ["urgent_reason"]},
        },
    )
    rules_beyond_json_schema = (
        "deadline lies after requested_at; for urgency immediate at most 72 hours after.",
    )

    @validates_schema
    def _urgent_path(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["urgency"] != "routine" and "urgent_reason" not in data:
            raise ValidationError(
                f"An {data['urgency']} request says why it cannot wait.", "urgent_reason"
            )
        allowed = data["deadline"] - data["requested_at"]
        if allowed <= 0:
            raise ValidationError("The deadline lies before the request was made.", "deadline")
        if data["urgency"] == "immediate" and allowed > IMMEDIATE_MAX_DEADLINE:
            raise ValidationError(
                "An immediate request has a deadline within 72 hours; use urgent otherwise.",
                "deadline",
            )
