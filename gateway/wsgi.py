"""WSGI entry point for gunicorn: ``gunicorn 'gateway.wsgi:app'`` with
``GATEWAY_INSTANCE`` naming the node's instance folder.

Each worker imports this module once. After the app is built, everything built so
far (modules, the app, its schemas and compiled loaders) is moved out of the cyclic
garbage collector's view (``gc.freeze``): it lives as long as the worker, and a full
collection no longer walks it again and again under load. Measured with the receive
benchmark: a full collection of a worker took 0.1-0.25 s while serving; with the
freeze the collections of a whole run took 0.02 s per worker (docs/benchmarks.md).
"""

import gc

from gateway.app import create_app

app = create_app()
gc.collect()  # what building left unreachable goes now, not frozen for good
gc.freeze()
