"""The work events hand to Celery, done by a real worker: the dashboard under gunicorn and a
Celery worker, as in production, with Redis and A2I Local. An unknown flow definition is
discovered; the overview's stats are refreshed, and the answers read, once for a burst of
events, not per event."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

from loops.models import FlowDefinition, HumanLoop
from tests.conftest import database_url_for_subprocesses

from .conftest import ENDPOINT, TOKEN, make_event

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, logs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout:.0f} s: {what}\n" + "\n".join(p.read_text()[-3000:] for p in logs))


@pytest.fixture
def stack(aws, tmp_path):
    """gunicorn (one process) and a Celery worker on a Redis database of their own."""
    broker = f"redis://127.0.0.1:6379/{int(os.environ.get('TEST_REDIS_DB', '3'))}"
    redis.Redis.from_url(broker).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CELERY_"))}
    env.update(aws.environ(), DATABASE_URL=database_url_for_subprocesses(), DB_CONN_MAX_AGE="0",
               REDIS_URL=broker, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, A2I_REGIONS=aws.region,
               A2I_EVENTS_TOKEN=TOKEN, LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    port = free_port()
    logs = {"web": tmp_path / "web.log", "worker": tmp_path / "worker.log"}
    processes = [
        subprocess.Popen([str(BIN / "gunicorn"), "dashboard.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                         cwd=ROOT, env=env, stdout=logs["web"].open("w"), stderr=subprocess.STDOUT, start_new_session=True),
        subprocess.Popen([str(BIN / "celery"), "-A", "dashboard", "worker", "-n", f"events-{uuid.uuid4().hex[:6]}@localhost",
                          "--concurrency", "1", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
                         cwd=ROOT, env=env, stdout=logs["worker"].open("w"), stderr=subprocess.STDOUT, start_new_session=True),
    ]
    try:
        url = f"http://127.0.0.1:{port}{ENDPOINT}"
        wait_for(lambda: _answers(url), 30, "gunicorn listening", logs.values())
        yield url, logs
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)
        redis.Redis.from_url(broker).flushdb()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 405
    except requests.RequestException:  # not listening yet, or still loading Django
        return False


def post(url: str, body) -> dict:
    response = requests.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def test_an_unknown_flow_definition_is_discovered_and_a_burst_of_events_refreshes_stats_once(stack, aws):
    url, logs = stack
    arn = aws.create_flow_definition(f"worker-{uuid.uuid4().hex[:6]}")
    runtime = aws.client("sagemaker-a2i-runtime")
    names = [f"burst-{i}" for i in range(12)]
    for name in names:
        runtime.start_human_loop(HumanLoopName=name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})
        aws.complete(name, answer={"label": "ok"})
    events = []
    for name in names:
        described = runtime.describe_human_loop(HumanLoopName=name)
        events.append(make_event(name, time=aws.store.now(), created=described["CreationTime"], fd_arn=arn,
                                 output_uri=described["HumanLoopOutput"]["OutputS3Uri"]))

    for event in events:  # one request each, as an API destination sends them
        post(url, event)

    fd = FlowDefinition.objects.get(arn=arn)  # recorded from the first event's ARN, then discovered:
    wait_for(lambda: FlowDefinition.objects.filter(arn=arn, last_discovered_at__isnull=False).exists(), 30,
             "discovery of the flow definition", logs.values())
    assert FlowDefinition.objects.get(arn=arn).task_title.startswith("Review worker-")

    wait_for(lambda: (FlowDefinition.objects.get(arn=arn).stats or {}).get("status_counts") == {"Completed": 12}, 30,
             "the stats refresh", logs.values())
    time.sleep(1)
    refreshes = re.findall(r"Task loops\.tasks\.refresh_flow_definition_stats\[[^\]]+\] succeeded", logs["worker"].read_text())
    # Twelve requests within the debounce window: one refresh of this flow definition.
    assert len(refreshes) == 1, logs["worker"].read_text()[-3000:]
    assert HumanLoop.objects.filter(flow_definition=fd, status="Completed").count() == 12

    # The Completed events also queue one reading of the answers (no sync, no beat here).
    wait_for(lambda: HumanLoop.objects.filter(flow_definition=fd, answers_state="ingested").count() == 12, 30,
             "the answers of the 12 loops read", logs.values())
    runs = re.findall(r"Task loops\.tasks\.ingest_answers\[[^\]]+\] succeeded", logs["worker"].read_text())
    assert 1 <= len(runs) <= 2, logs["worker"].read_text()[-3000:]  # per debounce window, not per event
