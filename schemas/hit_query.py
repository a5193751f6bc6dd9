"""The ``hit-query/1`` message: a Prüm-style hit/no-hit query.

A query carries no raw identifier, only blind-index tokens: each token is
HMAC-SHA-256 (PROTOCOL §1), under an index key the two states share, of one
normalised identifier: a name's match key (``schemas.names.match_keys``, one
token per key), a match key with the date of birth, a normalised document
number, an E.164 phone number, an account number. The
answering state computes the same tokens over its own records and answers
hit or no-hit per token (``hit-answer/1``); personal data follows only
through a ``case-request/1`` that a person at the answering state approves.

The query has no free-text member besides the common body's legal-basis and
handling texts, so that no identifier can ride along.
"""

from typing import Any

from marshmallow import ValidationError, fields, validates_schema

from .common import Code, MessageBodySchema, PatternText, StrictList, StrictSchema, UnixTime, about

#: What kind of identifier a token blinds.
TOKEN_KINDS = ("name", "name-dob", "document", "phone", "account")
#: base64url without padding of exactly 32 bytes: 43 characters, the last one
#: carrying 4 bits and 2 zero bits (so only one spelling per value).
BLIND_INDEX_PATTERN = r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
INDEX_KEY_PATTERN = r"[0-9a-f]{32}"
MAX_TOKENS = 100


class BlindIndexToken(PatternText):
    """A 32-byte HMAC-SHA-256 value in canonical unpadded base64url."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            BLIND_INDEX_PATTERN,
            description="Not a token: base64url (no padding) of 32 bytes, 43 characters.",
            max_length=43,
            **kwargs,
        )


class QueryTokenSchema(StrictSchema):
    """One blinded identifier."""

    kind = Code(TOKEN_KINDS, required=True)
    token = BlindIndexToken(required=True)


class HitQuerySchema(MessageBodySchema):
    """Body of ``hit-query/1``."""

    index_key = PatternText(
        INDEX_KEY_PATTERN,
        required=True,
        description="Not an index key id: 32 lower-case hex digits.",
        max_length=32,
        metadata=about("Id of the shared blind-index key the tokens were computed under."),
    )
    queried_at = UnixTime(required=True)
    tokens = StrictList(
        fields.Nested(QueryTokenSchema), min_items=1, max_items=MAX_TOKENS, required=True
    )

    rules_beyond_json_schema = ("Tokens are unique within the query.",)

    @validates_schema
    def _tokens_are_unique(self, data: dict[str, Any], **kwargs: Any) -> None:
        seen: set[str] = set()
        for index, entry in enumerate(data["tokens"]):
            if entry["token"] in seen:
                raise ValidationError({"tokens": {index: {"token": ["Token already queried."]}}})
            seen.add(entry["token"])
