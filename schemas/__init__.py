"""The xb1 message standard: canonical JSON, strict base64url and message schemas.

This package depends on nothing else in the project, so another state can take
it alone to validate messages.
"""
