"""A WSGI app for tests that run gunicorn with the node's settings and worker
(tests/test_gunicorn_worker.py): the requests they send are refused by gunicorn
before any app sees them, so the app itself does not matter."""

from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
