"""gunicorn settings for a node: the same as ``gateway serve`` uses. Pass either
``--config python:gateway.gunicorn_conf`` or this file."""

from gateway.gunicorn_conf import *  # noqa: F403
