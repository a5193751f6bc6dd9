"""gunicorn settings for a node. ``gateway serve`` loads this module; override any
value on the command line. Run behind the TLS reverse proxy in deploy/nginx/."""

import multiprocessing
import os
from typing import Any

from gateway import logs
from gateway.config import is_bind
from gateway.errors import ConfigError, shown_value

# The most workers, and threads per worker, the variables below (and `gateway serve
# --workers`) accept: a typo of a few digits must not fork thousands of processes.
MAX_WORKERS = 1024
MAX_THREADS = 1024


def count(variable: str, default: int, maximum: int, default_text: str) -> int:
    """The whole number from 1 to ``maximum`` in the environment ``variable``, or
    ``default`` when it is unset. Anything else (0, with which gunicorn would listen
    without a worker to answer, a word, a fraction) stops the server at start with a
    ``config-value`` error naming the variable; `gateway serve` checks it the same way
    before it starts gunicorn."""
    raw = os.environ.get(variable)
    if raw is None:
        return default
    text = raw.strip()
    # (int() refuses a text of thousands of digits with an error of its own)
    if text.isascii() and text.isdigit() and len(text) <= 9 and 1 <= int(text) <= maximum:
        return int(text)
    raise ConfigError(
        "config-value",
        f"{variable} is {shown_value(raw)}, not a whole number from 1 to {maximum}; set it to one, "
        f"or unset it for the default ({default_text})",
    )


def workers_from_env() -> int:
    return count(
        "GATEWAY_WORKERS",
        min(multiprocessing.cpu_count() * 2, MAX_WORKERS),
        MAX_WORKERS,
        "2 per CPU core",
    )


def threads_from_env() -> int:
    return count("GATEWAY_THREADS", 4, MAX_THREADS, "4")


def bind_from_env() -> str:
    """``GATEWAY_BIND`` (default 127.0.0.1:8080). An empty or malformed one stops the
    server at start: gunicorn would run listening nowhere, up and serving nothing."""
    value = os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")
    if not is_bind(value):
        raise ConfigError(
            "config-value",
            f"GATEWAY_BIND is {shown_value(value)}, not HOST:PORT (e.g. 127.0.0.1:8080 or "
            "[::1]:8080) or unix:PATH; set it to one, or unset it for 127.0.0.1:8080",
        )
    return value


bind = bind_from_env()
workers = workers_from_env()
threads = threads_from_env()
# gunicorn's gthread worker, answering the requests gunicorn itself refuses (not
# HTTP, over the limits below) with the node's JSON errors (gateway/gunicorn_worker.py).
worker_class = "gateway.gunicorn_worker.ThreadWorker"
timeout = 30
graceful_timeout = 20
keepalive = 5
# Bound request line and header sizes; envelope size is bounded by the app itself.
limit_request_line = 4094
limit_request_fields = 50
accesslog = "-"
errorlog = "-"
loglevel = logs.level_from_env()
# The node's own log lines (alarms, deliveries, trust list follow-up) at the same level,
# with time and level as gunicorn's: configured here, before the workers are forked.
logs.configure()
# No control socket (gunicorn 26 and later open one in the service user's home or
# runtime folder): the node is managed with signals, by systemd or by hand.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """gunicorn's hook in the master, before it listens or starts a worker: build the
    node's app once, so that a node that cannot start (a setting out of range, keys
    that do not load, no database) says why in one line and the server stops with the
    app-load status. Left to the workers, each said it, and with several of them
    gunicorn's own halt failed with a traceback (it met a second failed worker while
    stopping)."""
    if not str(getattr(server.app, "app_uri", "")).startswith("gateway.wsgi"):
        return  # another app served with these settings (the worker's tests)
    from gateway.app import create_or_exit

    create_or_exit().extensions["gateway"].engine.dispose()  # the workers open their own
