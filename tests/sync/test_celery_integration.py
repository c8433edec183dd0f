"""A real Celery worker and beat, started by the test against the real Redis, keep PostgreSQL
in line with A2I Local: discovery, incremental syncs, and the worker heartbeat."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from loops.models import FlowDefinition, HumanLoop, WorkerHeartbeat
from tests.conftest import database_url_for_subprocesses

from .conftest import list_a2i

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
DEADLINE_SECONDS = 60


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def database_matches(aws, fd_arn: str) -> bool:
    listing = {name: s["HumanLoopStatus"] for name, s in list_a2i(aws, fd_arn).items()}
    stored = dict(
        HumanLoop.objects.filter(flow_definition__arn=fd_arn, deleted_upstream=False).values_list("name", "status")
    )
    return bool(listing) and stored == listing


@pytest.fixture
def celery_env(aws, tmp_path):
    database_url = database_url_for_subprocesses()
    broker = f"redis://127.0.0.1:6379/{int(os.environ.get('TEST_REDIS_DB', '3'))}"
    redis.Redis.from_url(broker).flushdb()  # no task left over from an earlier run
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        DATABASE_URL=database_url,
        DB_CONN_MAX_AGE="0",
        REDIS_URL=broker,
        CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker,
        AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME=aws.url,
        AWS_ENDPOINT_URL_SAGEMAKER=aws.url,
        AWS_ENDPOINT_URL_S3=aws.s3_url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=aws.region,
        A2I_REGIONS=aws.region,
        A2I_DISCOVERY_INTERVAL="2",
        A2I_INCREMENTAL_SYNC_INTERVAL="2",
        A2I_SYNC_CLAIM_SECONDS="60",
        LOG_LEVEL="WARNING",
    )
    yield env
    redis.Redis.from_url(broker).flushdb()


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [CELERY, "-A", "dashboard", *args], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_worker_and_beat_bring_postgresql_in_line_with_a2i_local(aws, celery_env, tmp_path):
    arn = aws.create_flow_definition(f"celery-{uuid.uuid4().hex[:6]}")
    client = aws.client("sagemaker-a2i-runtime")
    names = [f"celery-loop-{i}" for i in range(150)]
    for name in names:
        client.start_human_loop(HumanLoopName=name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})

    hostname = f"sync-test-{uuid.uuid4().hex[:6]}@localhost"
    processes = []
    try:
        processes.append(
            start(["worker", "-n", hostname, "--concurrency", "2", "--without-gossip", "--without-mingle",
                   "--loglevel", "WARNING"], celery_env, tmp_path / "worker.log")
        )
        processes.append(
            start(["beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "WARNING"],
                  celery_env, tmp_path / "beat.log")
        )

        wait_for(lambda: FlowDefinition.objects.filter(arn=arn).exists(), DEADLINE_SECONDS, "flow definition discovered")
        wait_for(lambda: database_matches(aws, arn), DEADLINE_SECONDS, "first sync")

        # Changes in A2I reach the database through the next scheduled incremental syncs.
        for name in names[:20]:
            aws.complete(name, answer={"label": "ok"})
        for name in names[20:25]:
            aws.fail(name, "Expired", "expired")
        wait_for(lambda: database_matches(aws, arn), DEADLINE_SECONDS, "changes synced")
        assert HumanLoop.objects.filter(flow_definition__arn=arn, status="Completed").count() == 20

        wait_for(lambda: WorkerHeartbeat.objects.filter(worker=hostname).exists(), 30, "worker heartbeat")
    finally:
        for process in processes:
            stop(process)
    for process in processes:
        assert process.returncode is not None
