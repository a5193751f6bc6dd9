"""The ``case-response/1`` message: the answer to a ``case-request/1``.

``in_reply_to`` is the message id of the request. The ``outcome`` follows the
workflow received → accepted / refused / clarification-requested → partial →
complete:

- ``accepted``: the request will be executed; no data yet.
- ``refused``: ``refusal_ground`` (a code) and ``reason`` (words) say why.
- ``clarification-requested``: ``clarification`` says what is needed.
- ``partial``: some data (``provided`` and/or ``findings``); ``outstanding``
  says what is still to come and may give ``expected_by``.
- ``complete``: the data requested, as far as it exists.

Data travels only with ``partial`` and ``complete``, as entities
(``provided``, an entity set with local ids) and an evaluated ``findings``
statement.

Handling: responses default to H1 (not for judicial proceedings without the
originator's permission). The default is applied when a response is composed
(``with_default_handling``), not by the schema: the handling code a state
chose must be visible in what it signed, and a state answering a
mutual-legal-assistance request for use in court must be able to choose H0.
The schema therefore requires ``handling`` like every message does.
"""

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validates_schema

from .common import (
    Code,
    EntitySetSchema,
    JsonSchemaRules,
    MessageBodySchema,
    MessageRef,
    StatementSchema,
    Text,
    UnixTime,
    about,
)

OUTCOMES = ("accepted", "refused", "clarification-requested", "partial", "complete")
#: Grounds for refusing mutual legal assistance (Minsk 1993 art. 19, Chisinau 2002
#: art. 21, Palermo Convention art. 18(21)).
REFUSAL_GROUNDS: Mapping[str, str] = MappingProxyType(
    {
        "no-legal-basis": "no treaty or law allows the assistance asked",
        "sovereignty-security-public-order": "would prejudice sovereignty, security or order",
        "political-offence": "the offence is political",
        "no-dual-criminality": "the acts are no offence in the requested state",
        "ne-bis-in-idem": "the person was finally judged for the same acts",
        "human-rights-risk": "the data could be used to persecute or ill-treat a person",
        "insufficient-information": "the request does not say enough to act on",
        "data-not-held": "the requested state holds no such data",
        "disproportionate": "the request is disproportionate to the offence",
        "other": "another ground, given in the reason",
    }
)
DEFAULT_HANDLING: Mapping[str, str] = MappingProxyType({"code": "H1"})
_CARRIES_DATA = ("partial", "complete")


def with_default_handling(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a draft response body with handling H1 when the author chose none."""
    result = copy.deepcopy(dict(body))
    result.setdefault("handling", dict(DEFAULT_HANDLING))
    return result


class CaseResponseSchema(MessageBodySchema):
    """Body of ``case-response/1``."""

    in_reply_to = MessageRef(required=True, metadata=about("Message id of the case request."))
    case_reference = Text(max_length=100, metadata=about("The requester's case number, echoed."))
    response_reference = Text(max_length=100, metadata=about("The responder's own reference."))
    responded_at = UnixTime(required=True)
    outcome = Code(OUTCOMES, required=True)
    refusal_ground = Code(tuple(REFUSAL_GROUNDS))
    reason = Text(max_length=2000, multiline=True, metadata=about("Why refused, in words."))
    clarification = Text(
        max_length=2000, multiline=True, metadata=about("What the requester must clarify.")
    )
    findings = fields.Nested(StatementSchema, metadata=about("What was found, evaluated."))
    provided = fields.Nested(EntitySetSchema, metadata=about("The data provided, as entities."))
    outstanding = Text(
        max_length=2000, multiline=True, metadata=about("Partial answers: what is still to come.")
    )
    expected_by = UnixTime(metadata=about("Partial answers: when the rest should follow."))

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {"properties": {"provided": {"minProperties": 1}}},
        {
            "if": {"required": ["outcome"], "properties": {"outcome": {"const": "refused"}}},
            "then": {"required": ["refusal_ground", "reason"]},
            "else": {
                "not": {"anyOf": [{"required": ["refusal_ground"]}, {"required": ["reason"]}]}
            },
        },
        {
            "if": {
                "required": ["outcome"],
                "properties": {"outcome": {"const": "clarification-requested"}},
            },
            "then": {"required": ["clarification"]},
            "else": {"not": {"required": ["clarification"]}},
        },
        {
            "if": {
                "required": ["outcome"],
                "properties": {"outcome": {"enum": list(_CARRIES_DATA)}},
            },
            "then": {"anyOf": [{"required": ["provided"]}, {"required": ["findings"]}]},
            "else": {"not": {"anyOf": [{"required": ["provided"]}, {"required": ["findings"]}]}},
        },
        {
            "if": {"required": ["outcome"], "properties": {"outcome": {"const": "partial"}}},
            "then": {"required": ["outstanding"]},
            "else": {
                "not": {"anyOf": [{"required": ["outstanding"]}, {"required": ["expected_by"]}]}
            },
        },
    )
    rules_beyond_json_schema = ("expected_by lies after responded_at.",)

    @validates_schema
    def _outcome_fits_members(self, data: dict[str, Any], **kwargs: Any) -> None:
        outcome = data["outcome"]
        errors: dict[str | int, Any] = {}

        def need(member: str, message: str) -> None:
            if member not in data:
                errors[member] = [message]

        def refuse(member: str, message: str) -> None:
            if member in data:
                errors[member] = [message]

        if outcome == "refused":
            need("refusal_ground", "A refusal gives its ground.")
            need("reason", "A refusal gives its reason in words.")
        else:
            refuse("refusal_ground", "Only a refusal has a refusal_ground.")
            refuse("reason", "Only a refusal has a reason.")
        if outcome == "clarification-requested":
            need("clarification", "Say what the requester must clarify.")
        else:
            refuse("clarification", "Only a clarification request has clarification.")
        if data.get("provided") == {}:
            errors["provided"] = ["List at least one entity, or leave provided out."]
        if outcome in _CARRIES_DATA:
            if not {"provided", "findings"} & data.keys():
                errors["provided"] = [f"A {outcome} answer provides data or findings."]
        else:
            for member in ("provided", "findings"):
                refuse(member, f"An answer with outcome {outcome} carries no data.")
        if outcome == "partial":
            need("outstanding", "A partial answer says what is still to come.")
        else:
            refuse("outstanding", "Only a partial answer has outstanding items.")
            refuse("expected_by", "Only a partial answer has expected_by.")
        if data.get("expected_by", data["responded_at"] + 1) <= data["responded_at"]:
            errors["expected_by"] = ["Must lie after responded_at."]
        if errors:
            raise ValidationError(errors)
