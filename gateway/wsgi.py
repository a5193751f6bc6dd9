"""WSGI entry point for gunicorn: ``gunicorn 'gateway.wsgi:app'`` with
``GATEWAY_INSTANCE`` naming the node's instance folder.

Each worker imports this module once. After the app is built, everything built so
far (modules, the app, its schemas and compiled loaders) is moved out of the cyclic
garbage collector's view (``gc.freeze``): it lives as long as the worker, and a full
collection no longer walks it again and again under load. Measured with the receive
benchmark: a full collection of a worker took 0.1-0.25 s while serving; with the
freeze the collections of a whole run took 0.02 s per worker (docs/benchmarks.md).

A node that cannot start (a setting out of range, keys that do not load) says so in
one line, ``error [CODE]: message`` as the commands do, with gunicorn's
"application failed to load" status, which stops the server
(``gateway.app.create_or_exit``). With gateway/gunicorn_conf.py the master builds
the app once before any worker starts, so the line is said once; a worker that
fails later (the key file changed in between) says it again.
"""

import gc

from gateway.app import create_or_exit

app = create_or_exit()
gc.collect()  # what building left unreachable goes now, not frozen for good
gc.freeze()
