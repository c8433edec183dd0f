"""gunicorn settings of `make run` (scripts/run.py) and of the load benchmark (bench/load.py).

Threads in a few processes: a page spends much of its time waiting for PostgreSQL, and
threads share one connection pool per process. WEB_CONCURRENCY is gunicorn's own
variable for the number of processes. Static files are served by the app (whitenoise).
"""

import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# No keep-alive: a kept-alive connection stays with the process that accepted it, and with
# few processes one of them can end up with most of the users while the other idles (the
# load benchmark measured 78 % of the web CPU on one of two processes, and saturation
# down to 103 requests/s). Closed after each response, every request goes to whichever
# process accepts first: the less busy one. A new connection costs well under a
# millisecond on a LAN; a proxy in front keeps the browsers' connections alive itself.
# GUNICORN_CMD_ARGS="--keep-alive 2" restores gunicorn's default.
keepalive = 0
# A slow page (an export of a million loops) must not be killed as a hung worker.
timeout = 120
graceful_timeout = 5
accesslog = "-"
