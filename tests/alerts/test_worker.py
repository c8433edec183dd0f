"""A real Celery worker runs the minute task: it evaluates the rules and delivers the notification,
retrying a failing receiver with the service's backoff until it answers."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

from loops import tasks
from loops.models import AlertDelivery, AlertTransition
from tests.conftest import database_url_for_subprocesses

from .conftest import add_loops, make_rule, webhook_channel

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocesses(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "A2I_NOTIFY_RETRY_SECONDS": "1",
        "A2I_ALERT_HOLD_SECONDS": "0",
    }
    log_path = tmp_path / "worker.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    yield process, log_path
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log.close()


def test_the_worker_evaluates_and_delivers_retrying_a_failing_receiver(fleet, receivers, worker):
    process, log_path = worker
    receiver = receivers(statuses=(503, 200))
    make_rule("expiring", channels=[webhook_channel(receiver)])
    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)

    tasks.evaluate_alerts.delay()

    deadline = time.monotonic() + 60
    while not AlertDelivery.objects.filter(status="sent").exists():
        assert process.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"not delivered; worker log:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.3)
    delivery = AlertDelivery.objects.get()
    assert (delivery.attempts, delivery.http_status) == (2, 200)
    assert [request["json"]["state"] for request in receiver.requests] == ["firing", "firing"]  # one retry of one notification
    assert AlertTransition.objects.get().kind == "firing"
