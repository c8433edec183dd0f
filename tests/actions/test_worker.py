"""A bulk stop (more than A2I_BULK_ACTION_THRESHOLD loops) carried out by a real Celery worker.

The worker is a subprocess on the same Redis broker as this process (settings'
CELERY_BROKER_URL: give each run its own db number, e.g. REDIS_URL=redis://127.0.0.1:6379/6),
the test database and A2I Local; it is stopped after the test.
"""

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from loops.models import FlowDefinition, LoopActionBatch
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
    # Background work yields the CPU to pages: the worker lowered its priority (WORKER_NICENESS, 10).
    assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)


def test_an_all_matching_stop_is_prepared_by_the_worker_and_its_clients_are_closed_at_shutdown(
    aws, flow_definition, operator, worker, settings
):
    settings.A2I_BULK_ACTION_THRESHOLD = 5
    process, log_path = worker
    names = start_loops(aws, flow_definition, 12, prefix="all")
    sync(flow_definition)
    client = Client()
    client.force_login(operator)
    filters = f"flow_definition={flow_definition.arn}&status=InProgress"
    confirm = client.post("/actions/confirm/", {"action": "stop", "select_all": "1", "filters": filters})
    upto = confirm.context["form"].initial["upto"]

    response = client.post(
        "/actions/execute/", {"action": "stop", "select_all": "1", "filters": filters, "upto": upto, "reason": "all of them"}
    )

    # The request wrote no row per loop: the batch waits for the worker to select them.
    batch = LoopActionBatch.objects.get()
    assert response.status_code == 302
    assert batch.state in ("preparing", "pending", "running", "done")
    deadline = time.monotonic() + 90
    while batch.state != "done":
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"batch still {batch.state}; worker log:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.5)
        batch.refresh_from_db()
    assert (batch.total, batch.summary) == (12, "12 stopped")
    assert {a2i_status(aws, n) for n in names} <= {"Stopping", "Stopped"}

    process.terminate()  # a warm shutdown: worker_shutdown runs
    process.wait(timeout=30)
    assert re.search(r"closed [1-9]\d* AWS clients? at worker shutdown", log_path.read_text()), log_path.read_text()[-3000:]


def test_the_discover_now_button_has_a_worker_run_the_discovery(aws, operator, worker, settings):
    from django.core.cache import cache

    from loops.views.flow_definitions import DISCOVER_NOW_KEY

    process, log_path = worker
    cache.delete(DISCOVER_NOW_KEY)
    arn = aws.create_flow_definition(f"fresh-{uuid.uuid4().hex[:6]}")
    client = Client()
    client.force_login(operator)

    page = client.post("/flow-definitions/discover/", follow=True).content.decode()

    assert "Discovery queued" in page
    deadline = time.monotonic() + 60
    while not FlowDefinition.objects.filter(arn=arn).exists():
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"not discovered; worker log:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.5)
    # A second click within the interval queues nothing more.
    page = client.post("/flow-definitions/discover/", follow=True).content.decode()
    assert "less than 60 s ago" in page
    cache.delete(DISCOVER_NOW_KEY)
