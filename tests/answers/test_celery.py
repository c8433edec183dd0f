"""A real Celery worker and beat: a sync that sees loops become Completed queues one batched
ingestion, which reads their answers into PostgreSQL (no task per loop)."""

import os
import re
import uuid

import pytest
import redis

from loops.models import AnswersState, HumanAnswer, HumanLoop
from tests.conftest import database_url_for_subprocesses
from tests.sync.test_celery_integration import start, stop, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
DEADLINE_SECONDS = 60


@pytest.fixture
def worker_env(aws):
    broker = f"redis://127.0.0.1:6379/{int(os.environ.get('TEST_REDIS_DB', '3'))}"
    redis.Redis.from_url(broker).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        DATABASE_URL=database_url_for_subprocesses(), DB_CONN_MAX_AGE="0", REDIS_URL=broker, CELERY_BROKER_URL=broker,
        CELERY_RESULT_BACKEND=broker, AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME=aws.url, AWS_ENDPOINT_URL_SAGEMAKER=aws.url,
        AWS_ENDPOINT_URL_S3=aws.s3_url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=aws.region, A2I_REGIONS=aws.region, A2I_DISCOVERY_INTERVAL="2",
        A2I_INCREMENTAL_SYNC_INTERVAL="2", A2I_SYNC_CLAIM_SECONDS="60",
        # Beat's own ingestion schedule is far away: only the syncs trigger it here.
        A2I_ANSWERS_INTERVAL="3600", LOG_LEVEL="INFO",
    )
    yield env
    redis.Redis.from_url(broker).flushdb()


def test_a_sync_that_sees_completed_loops_queues_one_batched_ingestion(aws, worker_env, tmp_path):
    arn = aws.create_flow_definition(f"celery-answers-{uuid.uuid4().hex[:6]}", task_count=2)
    client = aws.client("sagemaker-a2i-runtime")
    names = [f"celery-ans-{i}" for i in range(30)]
    for name in names:
        client.start_human_loop(HumanLoopName=name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})
    for name in names[:25]:
        aws.complete(name, human_answers=[
            {"answerContent": {"label": "cat"}, "workerId": "w1", "timeSpentInSeconds": 3},
            {"answerContent": {"label": "cat"}, "workerId": "w2", "timeSpentInSeconds": 4},
        ])

    worker_log, processes = tmp_path / "worker.log", []
    try:
        processes.append(start(["worker", "-n", f"answers-{uuid.uuid4().hex[:6]}@localhost", "--concurrency", "2",
                                "--without-gossip", "--without-mingle", "--loglevel", "INFO"], worker_env, worker_log))
        processes.append(start(["beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "WARNING"],
                               worker_env, tmp_path / "beat.log"))
        wait_for(lambda: HumanAnswer.objects.filter(loop__flow_definition__arn=arn).count() == 50, DEADLINE_SECONDS,
                 "the answers of 25 completed loops read")
        assert set(HumanLoop.objects.filter(name__in=names[:25]).values_list("answers_state", flat=True)) == {AnswersState.INGESTED}
        # Loops completed later are read after the next sync.
        for name in names[25:]:
            aws.complete(name, answer={"label": "dog"}, worker_id="w3")
        wait_for(lambda: HumanAnswer.objects.filter(worker_id="w3").count() == 5, DEADLINE_SECONDS, "later completions read")
    finally:
        for process in reversed(processes):
            stop(process)
    log = worker_log.read_text()
    runs = re.findall(r"Task loops\.tasks\.ingest_answers\[[^\]]+\] succeeded", log)
    syncs = re.findall(r"Task loops\.tasks\.sync_flow_definition\[[^\]]+\] succeeded", log)
    # Batched: a handful of runs (at most one per sync that changed loops), not one per loop.
    assert 1 <= len(runs) <= len(syncs) and len(runs) < 30, (len(runs), len(syncs))
