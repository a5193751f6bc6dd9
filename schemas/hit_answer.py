"""The ``hit-answer/1`` message: the answer to a ``hit-query/1``.

For each token of the query the answer says ``hit`` or ``no-hit``. A hit
carries only a ``reference`` the querying state cites in a
``case-request/1`` to ask for the data; the answer carries no personal data.
"""

from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validates_schema

from .common import (
    Code,
    JsonSchemaRules,
    MessageBodySchema,
    MessageRef,
    PatternText,
    StrictList,
    StrictSchema,
    UnixTime,
    about,
)
from .hit_query import MAX_TOKENS, BlindIndexToken

RESULTS = ("hit", "no-hit")
#: A hit's reference: an opaque token, so that no personal data can ride in it.
HIT_REFERENCE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}"


class TokenResultSchema(StrictSchema):
    """Hit or no-hit for one token of the query."""

    token = BlindIndexToken(required=True, metadata=about("The token as queried."))
    result = Code(RESULTS, required=True)
    reference = PatternText(
        HIT_REFERENCE_PATTERN,
        description="A reference is 1-100 characters: letters A-Z a-z, digits, . _ / -.",
        max_length=100,
        metadata=about("On a hit: the reference to cite in a case-request/1."),
    )

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["result"], "properties": {"result": {"const": "hit"}}},
            "then": {"required": ["reference"]},
            "else": {"not": {"required": ["reference"]}},
        },
    )

    @validates_schema
    def _hit_has_reference(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["result"] == "hit" and "reference" not in data:
            raise ValidationError("A hit gives the reference to request the data.", "reference")
        if data["result"] == "no-hit" and "reference" in data:
            raise ValidationError("A no-hit has no reference.", "reference")


class HitAnswerSchema(MessageBodySchema):
    """Body of ``hit-answer/1``."""

    in_reply_to = MessageRef(required=True, metadata=about("Message id of the hit-query/1."))
    answered_at = UnixTime(required=True)
    results = StrictList(
        fields.Nested(TokenResultSchema), min_items=1, max_items=MAX_TOKENS, required=True
    )

    rules_beyond_json_schema = ("Each token is answered once.",)

    @validates_schema
    def _tokens_answered_once(self, data: dict[str, Any], **kwargs: Any) -> None:
        seen: set[str] = set()
        for index, entry in enumerate(data["results"]):
            if entry["token"] in seen:
                raise ValidationError({"results": {index: {"token": ["Token already answered."]}}})
            seen.add(entry["token"])
