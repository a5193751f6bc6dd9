"""WSGI entry point for gunicorn: ``gunicorn 'gateway.wsgi:app'`` with
``GATEWAY_INSTANCE`` naming the node's instance folder."""

from gateway.app import create_app

app = create_app()
