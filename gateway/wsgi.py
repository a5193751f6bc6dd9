"""WSGI entry point for gunicorn: ``gunicorn 'gateway.wsgi:app'`` with
``GATEWAY_INSTANCE`` naming the node's instance folder.

Each worker imports this module once. After the app is built, everything built so
far (modules, the app, its schemas and compiled loaders) is moved out of the cyclic
garbage collector's view (``gc.freeze``): it lives as long as the worker, and a full
collection no longer walks it again and again under load. Measured with the receive
benchmark: a full collection of a worker took 0.1-0.25 s while serving; with the
freeze the collections of a whole run took 0.02 s per worker (docs/benchmarks.md).

A node that cannot start (a setting out of range, keys that do not load) says so in
one line, ``error [CODE]: message`` as the commands do, and the worker exits with
gunicorn's "application failed to load" status, which stops the server: every worker
would fail alike.
"""

import gc
import sys

from gateway.app import create_app
from gateway.errors import GatewayError
from keys.sealed import KeyFileError

APP_LOAD_ERROR = 4  # gunicorn's Arbiter.APP_LOAD_ERROR: the master halts


def _create():  # type: ignore[no-untyped-def]
    try:
        return create_app()
    except (GatewayError, KeyFileError) as error:
        sys.stderr.write(f"error [{error.code}]: {error.message}\n")
        sys.stderr.flush()
        raise SystemExit(APP_LOAD_ERROR) from None


app = _create()
gc.collect()  # what building left unreachable goes now, not frozen for good
gc.freeze()
