"""The node's own log lines: to standard error, with time, process, level and source.

Long-running processes (``gateway dispatch``, the gunicorn workers of ``gateway
serve``) log at ``GATEWAY_LOG_LEVEL`` (default ``info``); the other commands at
``warning`` unless that variable says otherwise, so that a one-off command prints its
answer, not the node's routine. Nothing is configured when the process has already
set up logging (an embedding program, the test runner): theirs stands.
"""

from __future__ import annotations

import logging
import os
import sys

from gateway.errors import ConfigError, shown_value

LEVEL_VARIABLE = "GATEWAY_LOG_LEVEL"
LEVELS = ("debug", "info", "warning", "error", "critical")
FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def level_from_env(default: str = "info") -> str:
    """``GATEWAY_LOG_LEVEL`` (any case), or ``default`` when unset; anything else is a
    ``config-value`` error naming the variable."""
    raw = os.environ.get(LEVEL_VARIABLE)
    if raw is None:
        return default
    level = raw.strip().lower()
    if level not in LEVELS:
        raise ConfigError(
            "config-value",
            f"{LEVEL_VARIABLE} is {shown_value(raw)}, not one of {', '.join(LEVELS)}; set it "
            f"to one, or unset it for the default ({default})",
        )
    return level


def configure(default: str = "info") -> bool:
    """Send log records of ``GATEWAY_LOG_LEVEL`` (or ``default``) and above to standard
    error, unless the root logger has a handler already; whether it did."""
    level = level_from_env(default)
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level != "debug":  # the migration tool's routine at every start
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return True
