"""Errors raised while parsing wire data. Each carries a stable xb1 code."""

from typing import Any


class WireFormatError(ValueError):
    """Bytes or text that are not valid xb1 wire data.

    ``code`` is one of the stable rejection codes of PROTOCOL §3
    (``malformed`` or ``not-canonical`` for the wire formats; the subclasses
    below carry ``schema-invalid`` and ``unsupported-type`` for step 8).
    """

    code = "malformed"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotCanonical(WireFormatError):
    code = "not-canonical"


class UnsupportedType(WireFormatError):
    """The envelope's ``typ`` names no message type this standard knows."""

    code = "unsupported-type"


class SchemaInvalid(WireFormatError):
    """A message body that does not satisfy the schema of its ``typ``.

    ``errors`` is marshmallow's messages dict, keyed by field name (list
    positions are integer keys), e.g.
    ``{"subjects": {0: {"names": ["Shorter than minimum length 1."]}}}``.
    """

    code = "schema-invalid"

    def __init__(self, message: str, errors: dict[str | int, Any]) -> None:
        super().__init__(message)
        self.errors = errors
