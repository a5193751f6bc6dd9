"""The ``grant/1`` message: the originator's permission to pass on H2 data.

Handling code H2 means "no onward dissemination without the originator's
permission". A state that holds H2 data from another state and wants to pass it
to a third state asks the originator (by any channel, typically a case
request); the originator answers with a ``grant/1`` sent to the holder. The
envelope's signature makes the grant the originator's signed permission.

``refers_to`` is the H2 message the grant covers; ``to_states`` the members the
holder may pass its data to (node ids such as ``KG`` or ``KG-MVD``);
``purposes`` what for; ``valid_until`` until when. ``conditions`` states any
further condition in words. A grant is revoked by a ``correction/1`` that
withdraws it.
"""

from typing import Any

from marshmallow import ValidationError, validates_schema

from .common import (
    PURPOSES,
    Code,
    MessageBodySchema,
    MessageRef,
    PatternText,
    StrictList,
    Text,
    UnixTime,
    about,
)

NODE_PATTERN = r"[A-Z]{2}(-[A-Z0-9]{1,16})?"


class GrantSchema(MessageBodySchema):
    """Body of ``grant/1``."""

    refers_to = MessageRef(required=True, metadata=about("Message id of the H2 message."))
    to_states = StrictList(
        PatternText(
            NODE_PATTERN,
            description="Must be a member's node id such as KG or KG-MVD.",
            max_length=19,
        ),
        min_items=1,
        max_items=20,
        required=True,
        metadata=about("Members the holder may pass the data to."),
    )
    purposes = StrictList(
        Code(PURPOSES),
        min_items=1,
        max_items=len(PURPOSES),
        required=True,
        metadata=about("What the data may be passed on for."),
    )
    granted_at = UnixTime(required=True)
    valid_until = UnixTime(required=True, metadata=about("The grant ends at this time."))
    conditions = Text(max_length=2000, multiline=True)
    granted_by = Text(max_length=200, required=True, metadata=about("Authority and officer."))

    rules_beyond_json_schema = (
        "valid_until lies after granted_at; to_states and purposes name each entry once.",
    )

    @validates_schema
    def _grant_is_coherent(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["valid_until"] <= data["granted_at"]:
            raise ValidationError("valid_until lies before the grant was made.", "valid_until")
        for name in ("to_states", "purposes"):
            if len(set(data[name])) != len(data[name]):
                raise ValidationError("Name each entry once.", name)
