"""The answers' world: loops completed in A2I Local with known answers, and a
database-only world of answers with known figures for the reviewers pages."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from loops.models import FlowDefinition, HumanAnswer, HumanLoop
from loops.services.output_json import content_hash
from tests.conftest import make_fd, make_loop, start_loops, sync, unique


def put_output(aws, loop: HumanLoop, body: bytes) -> None:
    """Replace a loop's output.json in moto's S3 with `body`, as it is."""
    bucket, key = loop.output_s3_uri[len("s3://"):].split("/", 1)
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=body)


def delete_output(aws, loop: HumanLoop) -> None:
    bucket, key = loop.output_s3_uri[len("s3://"):].split("/", 1)
    aws.client("s3").delete_object(Bucket=bucket, Key=key)


def read_output(aws, loop: HumanLoop) -> dict:
    bucket, key = loop.output_s3_uri[len("s3://"):].split("/", 1)
    return json.loads(aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


@pytest.fixture
def multi_fd(aws, db):
    """A flow definition with TaskCount 3 in A2I Local, discovered."""
    from loops.services.discovery import discover_flow_definitions

    arn = aws.create_flow_definition(unique("triple"), task_count=3)
    discover_flow_definitions([aws.region])
    return FlowDefinition.objects.get(arn=arn)


def complete_synced(aws, fd, human_answers_by_loop: list[list[dict]], prefix="ans") -> list[HumanLoop]:
    """Start one loop per entry, complete each with its humanAnswers, sync; the loops in order."""
    names = start_loops(aws, fd, len(human_answers_by_loop), prefix=prefix)
    for name, answers in zip(names, human_answers_by_loop, strict=True):
        aws.complete(name, human_answers=answers)
    sync(fd)
    by_name = {loop.name: loop for loop in HumanLoop.objects.filter(name__in=names)}
    return [by_name[name] for name in names]


class AnswerWorld:
    pass


def add_answer(loop, index, worker, *, submitted, spent, accepted=None, content=None, other=0, agreeing=0, agrees=None):
    content = {"label": "cat"} if content is None else content
    return HumanAnswer.objects.create(
        loop=loop, index=index, flow_definition_id=loop.flow_definition_id, loop_creation_time=loop.creation_time,
        worker_id=worker, worker_sub=f"sub-{worker}", acceptance_time=accepted, submission_time=submitted,
        time_spent_seconds=spent, queue_wait_seconds=(accepted - loop.creation_time).total_seconds() if accepted else None,
        answer_content=content, content_bytes=len(json.dumps(content)), content_hash=content_hash(content),
        other_answers=other, agreeing_answers=agreeing, loop_agrees=agrees,
    )


@pytest.fixture
def answer_world(db):
    """Known answers, written straight to the database.

        fd_a (TaskCount 2)
          a1  created now-2 h: alice (60 s, accepted +10 min) and bob (120 s, accepted +20 min), agree
          a2  created now-3 h: alice (30 s, accepted +5 min) and bob (90 s, accepted +40 min), disagree
          a3  created now-10 d: alice (300 s, accepted +60 min), alone
        fd_b (TaskCount 1)
          b1  created now-1 h: carol (10 s, accepted +1 min)

    alice: 3 answers, times 30/60/300 s (median 60, p90 252), waits 5/10/60 min (median 10 min),
           compared pairs 2, agreeing 1; bob: 2 answers (median time 105 s), carol: 1.
    """
    now = timezone.now()
    w = AnswerWorld()
    w.now = now
    w.fd_a = make_fd("reviews-a", "us-east-1", lifetime=86400, now=now)
    FlowDefinition.objects.filter(pk=w.fd_a.pk).update(task_count=2)
    w.fd_a.task_count = 2
    w.fd_b = make_fd("reviews-b", "us-east-1", lifetime=86400, now=now)
    w.a1 = make_loop(w.fd_a, "a1", "Completed", now - timedelta(hours=2), now=now)
    w.a2 = make_loop(w.fd_a, "a2", "Completed", now - timedelta(hours=3), now=now)
    w.a3 = make_loop(w.fd_a, "a3", "Completed", now - timedelta(days=10), now=now)
    w.b1 = make_loop(w.fd_b, "b1", "Completed", now - timedelta(hours=1), now=now)
    m = timedelta(minutes=1)
    add_answer(w.a1, 0, "alice", accepted=w.a1.creation_time + 10 * m, submitted=w.a1.creation_time + 11 * m, spent=60,
               other=1, agreeing=1, agrees=True)
    add_answer(w.a1, 1, "bob", accepted=w.a1.creation_time + 20 * m, submitted=w.a1.creation_time + 22 * m, spent=120,
               other=1, agreeing=1, agrees=True)
    add_answer(w.a2, 0, "alice", accepted=w.a2.creation_time + 5 * m, submitted=w.a2.creation_time + 6 * m, spent=30,
               content={"label": "dog"}, other=1, agreeing=0, agrees=False)
    add_answer(w.a2, 1, "bob", accepted=w.a2.creation_time + 40 * m, submitted=w.a2.creation_time + 42 * m, spent=90,
               other=1, agreeing=0, agrees=False)
    add_answer(w.a3, 0, "alice", accepted=w.a3.creation_time + 60 * m, submitted=w.a3.creation_time + 65 * m, spent=300)
    add_answer(w.b1, 0, "carol", accepted=w.b1.creation_time + 1 * m, submitted=w.b1.creation_time + 2 * m, spent=10)
    return w
