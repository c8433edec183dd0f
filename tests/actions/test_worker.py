"""A bulk stop (more than A2I_BULK_ACTION_THRESHOLD loops) carried out by a real Celery worker.

The worker is a subprocess on the same Redis broker as this process (settings'
CELERY_BROKER_URL: give each run its own db number, e.g. REDIS_URL=redis://127.0.0.1:6379/6),
the test database and A2I Local; it is stopped after the test.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from loops.models import LoopActionBatch
from tests.conftest import a2i_status, database_url_for_subprocesses, loops_named, start_loops, sync

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(aws, tmp_path):
    env = {
        **os.environ,  # includes the AWS_* variables the aws fixture set for A2I Local
        "DATABASE_URL": database_url_for_subprocesses(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "A2I_MAX_ATTEMPTS": "2",
    }
    log = open(tmp_path / "worker.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield process, tmp_path / "worker.log"
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def test_a_real_worker_runs_a_bulk_stop_and_the_page_shows_it_done(aws, flow_definition, operator, worker):
    process, log_path = worker
    names = start_loops(aws, flow_definition, 25, prefix="bulk")
    sync(flow_definition)
    client = Client()
    client.force_login(operator)

    response = client.post(
        "/actions/execute/", {"action": "stop", "loop": [loop.pk for loop in loops_named(names)], "reason": "worker test"}
    )

    batch = LoopActionBatch.objects.get()
    assert response.status_code == 302 and batch.total == 25
    deadline = time.monotonic() + 90
    while True:
        batch.refresh_from_db()
        if batch.state == "done":
            break
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"batch still {batch.state}; worker log:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.5)

    assert batch.summary == "25 stopped"
    assert {a2i_status(aws, n) for n in names} <= {"Stopping", "Stopped"}
    page = client.get(response["Location"]).content.decode()
    assert "25 stopped" in page and "hx-trigger" not in page
