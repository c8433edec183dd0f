"""gunicorn settings of `make run` (scripts/run.py) and of the load benchmark (bench/load.py).

Threads in a few processes: a page spends much of its time waiting for PostgreSQL, and
threads share one connection pool per process. WEB_CONCURRENCY is gunicorn's own
variable for the number of processes. Static files are served by the app (whitenoise).
"""

import os

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# A slow page (an export of a million loops) must not be killed as a hung worker.
timeout = 120
graceful_timeout = 5
accesslog = "-"
