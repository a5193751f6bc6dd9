"""gunicorn settings for a node. ``gateway serve`` loads this module; override any
value on the command line. Run behind the TLS reverse proxy in deploy/nginx/."""

import multiprocessing
import os

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GATEWAY_WORKERS", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("GATEWAY_THREADS", 4))
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
loglevel = os.environ.get("GATEWAY_LOG_LEVEL", "info")
# No control socket (gunicorn 26 and later open one in the service user's home or
# runtime folder): the node is managed with signals, by systemd or by hand.
control_socket_disable = True
