"""A Redis database of its own for each pytest-xdist worker (`make test` runs two).

Loaded with `-p tests.xdist_worker` (pyproject's addopts), before pytest-django imports the
settings, which read REDIS_URL once. Worker gw<n> uses database (d - n) mod 16, d being
the database of REDIS_URL (0 when unset): the cache entries, Celery queues and locks of
one worker's tests never meet the other's. gw0 keeps d; `.ci/run` picks d so that d - 1
is empty too. Likewise the Celery integration tests' broker database (TEST_REDIS_DB,
default 3): 3 + n. TEST_REDIS_DATABASES lists all of them, for the tests that look for a
free one. PostgreSQL needs nothing here: pytest-django names each worker's test
database after it (test_<name>_gw<n>).
"""

import os
import re

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if re.fullmatch(r"gw\d+", _worker):
    _url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    _prefix, _db = re.fullmatch(r"(.*?)(?:/(\d*))?", _url).groups()
    _databases = [(int(_db or 0) - n) % 16 for n in range(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))]
    _brokers = [int(os.environ.get("TEST_REDIS_DB", "3")) + n for n in range(len(_databases))]
    os.environ["TEST_REDIS_DATABASES"] = ",".join(map(str, _databases + _brokers))
    os.environ["TEST_REDIS_DB"] = str(_brokers[int(_worker[2:])])
    _own = f"{_prefix}/{_databases[int(_worker[2:])]}"
    if os.environ.get("CELERY_BROKER_URL", _url) == _url:
        os.environ["CELERY_BROKER_URL"] = _own
    os.environ["REDIS_URL"] = _own
