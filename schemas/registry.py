"""Which message types exist, and validating a message body against its type
(PROTOCOL §3, opening step 8: "validate M against the schema of ``typ``").
"""

from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from marshmallow import Schema, ValidationError

from .alert import AlertSchema
from .case_request import CaseRequestSchema
from .case_response import CaseResponseSchema
from .correction import CorrectionSchema
from .errors import SchemaInvalid, UnsupportedType
from .fastcheck import loader_for
from .grant import GrantSchema
from .hit_answer import HitAnswerSchema
from .hit_query import HitQuerySchema
from .referral import ReferralSchema

#: Message type and major version (the envelope's ``typ``) → body schema.
MESSAGE_TYPES: Mapping[str, type[Schema]] = MappingProxyType(
    {
        "alert/1": AlertSchema,
        "referral/1": ReferralSchema,
        "case-request/1": CaseRequestSchema,
        "case-response/1": CaseResponseSchema,
        "hit-query/1": HitQuerySchema,
        "hit-answer/1": HitAnswerSchema,
        "correction/1": CorrectionSchema,
        "grant/1": GrantSchema,
    }
)


@cache
def _schema_for(schema_class: type[Schema]) -> Schema:
    # Schemas hold no per-call state in marshmallow 4, so one instance per type
    # is shared; building one per message would cost more than validating.
    return schema_class()


def validate_body(typ: str, body: object) -> dict[str, Any]:
    """Validate a parsed message body against the schema of ``typ``.

    Returns the loaded body: a plain JSON-compatible dict of the same shape
    (nothing is converted or defaulted). Raises ``UnsupportedType`` for a
    ``typ`` this standard does not define and ``SchemaInvalid`` (whose
    ``errors`` names the offending fields) for a body that does not conform.
    """
    schema_class = MESSAGE_TYPES.get(typ) if isinstance(typ, str) else None
    if schema_class is None:
        raise UnsupportedType(f"unsupported message type {typ!r}")
    schema = _schema_for(schema_class)
    # The loader compiled from the same schema accepts only what marshmallow accepts,
    # with the same output (tests/test_schemas_fastcheck.py); anything else, and
    # every error message, is marshmallow's.
    fast_load = loader_for(schema)
    if fast_load is not None and (fast := fast_load(body)) is not None:
        return fast
    try:
        loaded = schema.load(body)  # type: ignore[arg-type]
    except ValidationError as e:
        messages = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        raise SchemaInvalid(f"{typ} body does not conform to its schema", messages) from e
    # Every field type yields xb1-json values (tests/test_schemas_registry.py proves it
    # for every registered type), so the loaded body needs no second walk here: this
    # is the receive path's hottest function.
    return dict(loaded)
