"""The ``correction/1`` message: corrects or withdraws a message sent earlier.

``refers_to`` is the message id of the earlier message and ``refers_to_type``
its type. ``action`` is:

- ``correct``: ``body`` is the corrected body **in full**, valid against the
  schema of ``refers_to_type``; the recipient replaces what it stored.
- ``withdraw``: the earlier message must no longer be used; recipients erase
  its payload and keep only the metadata the audit needs. No ``body``.

Why the full body and not the changed fields: a full body is checked by the
same schema as the original, so a correction cannot leave a recipient with an
invalid message; it needs no copy of the original to apply (a recipient may
have purged it or received a minimised version); and what the originator
signed is exactly what the recipient now holds. Corrections travel to every
recipient of the original, minimised per recipient like the original.

``reason_code`` and ``reason`` say why. A correction itself is not corrected:
send a new correction of the original instead.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from marshmallow import ValidationError, fields, validates_schema

from .common import Code, JsonSchemaRules, MessageBodySchema, MessageRef, Text, UnixTime, about

ACTIONS = ("correct", "withdraw")
REASON_CODES: Mapping[str, str] = MappingProxyType(
    {
        "error-in-data": "the data sent was wrong",
        "new-information": "newer information replaces the data sent",
        "consent-withdrawn": "the data subject withdrew consent",
        "unlawfully-sent": "the data should not have been sent",
        "court-decision": "a court ordered the correction or erasure",
        "case-closed": "the case ended and the data is no longer needed",
        "duplicate": "the message duplicated another",
    }
)
#: Types a correction may refer to (the registry's types minus correction/1 itself).
CORRECTABLE_TYPES = (
    "alert/1",
    "referral/1",
    "case-request/1",
    "case-response/1",
    "hit-query/1",
    "hit-answer/1",
    "grant/1",
)


class JsonObject(fields.Field[dict[str, Any]]):
    """A JSON object, taken as it is; the schema holding it validates its content."""

    default_error_messages = {"invalid": "Not a JSON object."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.make_error("invalid")
        return value


class CorrectionSchema(MessageBodySchema):
    """Body of ``correction/1``."""

    refers_to = MessageRef(required=True, metadata=about("Message id of the earlier message."))
    refers_to_type = Code(CORRECTABLE_TYPES, required=True, metadata=about("Its type."))
    action = Code(ACTIONS, required=True)
    reason_code = Code(tuple(REASON_CODES), required=True)
    reason = Text(max_length=2000, multiline=True, required=True)
    corrected_at = UnixTime(required=True)
    body = JsonObject(
        metadata=about("For correct: the corrected body in full, valid for refers_to_type.")
    )

    json_schema_rules: ClassVar[JsonSchemaRules] = (
        {
            "if": {"required": ["action"], "properties": {"action": {"const": "correct"}}},
            "then": {"required": ["body"]},
            "else": {"not": {"required": ["body"]}},
        },
        *(
            {
                "if": {
                    "required": ["refers_to_type"],
                    "properties": {"refers_to_type": {"const": typ}},
                },
                "then": {"properties": {"body": {"$ref": f"urn:xb1:schema:{typ}"}}},
            }
            for typ in CORRECTABLE_TYPES
        ),
    )

    @validates_schema
    def _body_fits_action_and_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["action"] == "withdraw":
            if "body" in data:
                raise ValidationError("A withdrawal carries no body.", "body")
            return
        if "body" not in data:
            raise ValidationError("A correction carries the corrected body in full.", "body")
        from .registry import MESSAGE_TYPES  # the registry imports this module

        schema_class = MESSAGE_TYPES[data["refers_to_type"]]
        try:
            schema_class().load(data["body"])
        except ValidationError as e:
            raise ValidationError({"body": e.messages}) from e
