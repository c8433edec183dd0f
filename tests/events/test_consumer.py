"""manage.py consume_events against real SQS queues (moto's server) through real boto3."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from loops.models import HumanLoop, ReceivedEvent
from tests.conftest import database_url_for_subprocesses, make_loop, requires_postgresql

from .conftest import for_loop, make_event, sns_envelope

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def consume_once(queue_url: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("consume_events", "--queue-url", queue_url, "--once", stdout=out)
    return out.getvalue()


def test_events_from_the_queue_are_applied_and_exactly_those_messages_deleted(sqs, world):
    queue, _dlq = sqs.create("events-applied")
    a2i_time = world.now - timedelta(seconds=42)
    failed = for_loop(world.inv_new, "Failed", time=a2i_time, failure_code="Expired", failure_reason="too late")
    completed = for_loop(world.inv_old, time=a2i_time)
    sqs.send(queue, failed)
    sqs.send(queue, completed)
    sqs.send(queue, completed)  # delivered twice: SQS and EventBridge are at least once

    output = consume_once(queue)

    assert f"{queue}: 2 applied, 1 duplicate" in output
    loop = HumanLoop.objects.get(pk=world.inv_new.pk)
    assert (loop.status, loop.failure_code, loop.failure_reason) == ("Failed", "Expired", "too late")
    assert loop.status_changed_at == a2i_time.replace(microsecond=0)
    assert loop.status_changes.get(source="event").observed_at == a2i_time.replace(microsecond=0)
    assert set(ReceivedEvent.objects.values_list("transport", flat=True)) == {"sqs"}
    assert sqs.count(queue) == 0


def test_an_sns_wrapped_event_is_applied(sqs, world):
    queue, _dlq = sqs.create("events-sns")
    sqs.send(queue, sns_envelope(for_loop(world.inv_new, "Stopped", time=world.now)))
    assert "1 applied" in consume_once(queue)
    assert HumanLoop.objects.get(pk=world.inv_new.pk).status == "Stopped"
    assert sqs.count(queue) == 0


def test_a_poison_message_is_left_in_the_queue_until_its_redrive_policy_moves_it(sqs, world):
    queue, dlq = sqs.create("events-poison", visibility=1, max_receives=2)
    poison = {**for_loop(world.inv_old, time=world.now), "detail-type": "Something Else"}
    sqs.send(queue, "not json at all")
    sqs.send(queue, poison)
    sqs.send(queue, for_loop(world.inv_new, time=world.now))

    output = consume_once(queue)

    assert "1 applied, 2 left in the queue" in output
    assert HumanLoop.objects.get(pk=world.inv_new.pk).status == "Completed"
    assert HumanLoop.objects.get(pk=world.inv_old.pk).status == "InProgress"
    assert ReceivedEvent.objects.count() == 1
    time.sleep(1.5)  # the visibility timeout: the poison is visible again, not deleted
    assert "2 left in the queue" in consume_once(queue)
    time.sleep(1.5)
    # Received maxReceiveCount times: SQS moves them to the dead-letter queue. Nothing was dropped.
    assert sqs.drain(queue) == []
    assert sorted(sqs.drain(dlq)) == sorted(["not json at all", json.dumps(poison)])


def test_every_queue_of_a2i_events_queue_urls_is_read(sqs, world, settings):
    east, _ = sqs.create("events-east")
    west, _ = sqs.create("events-west")
    settings.A2I_EVENTS_QUEUE_URLS = [east, west]
    sqs.send(east, for_loop(world.inv_new, time=world.now))
    sqs.send(west, for_loop(world.inv_eu, time=world.now))
    call_command("consume_events", "--once")
    assert set(HumanLoop.objects.filter(name__in=["inv-new", "inv-eu"]).values_list("status", flat=True)) == {"Completed"}


def test_a_missing_queue_is_an_error_not_a_crash(sqs, settings):
    with pytest.raises(CommandError, match="could not be read"):
        consume_once(sqs.client.meta.endpoint_url + "/123456789012/no-such-queue")
    settings.A2I_EVENTS_QUEUE_URLS = []
    with pytest.raises(CommandError, match="no queue"):
        call_command("consume_events", "--once")


@requires_postgresql
def test_sigterm_mid_stream_finishes_the_batch_in_hand_and_loses_nothing(sqs, world, aws, tmp_path):
    queue, _dlq = sqs.create("events-sigterm", visibility=2)
    fd = world.fd_inv
    loops = [make_loop(fd, f"stream-{i}", "InProgress", world.now - timedelta(hours=1), now=world.now) for i in range(150)]
    events = {loop.name: for_loop(loop, time=world.now) for loop in loops}
    sqs.send_many(queue, list(events.values()))

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(aws.environ(), AWS_ENDPOINT_URL_SQS=aws.s3_url, DATABASE_URL=database_url_for_subprocesses(),
               DB_CONN_MAX_AGE="0", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    log = tmp_path / "consumer.log"
    with log.open("w") as out:
        consumer = subprocess.Popen([sys.executable, "manage.py", "consume_events", "--queue-url", queue],
                                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while ReceivedEvent.objects.count() < 30:
            assert consumer.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the consumer applied nothing within 60 s:\n" + log.read_text()
            time.sleep(0.05)
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=30) == 0, log.read_text()
    finally:
        if consumer.poll() is None:
            consumer.kill()

    applied = set(ReceivedEvent.objects.values_list("loop__name", flat=True))
    assert 30 <= len(applied) < len(events), "SIGTERM arrived after the stream ended"
    assert set(HumanLoop.objects.filter(name__in=applied).values_list("status", flat=True)) == {"Completed"}
    time.sleep(2.5)  # messages received but not applied (none, if the batch in hand was finished) become visible
    left = {json.loads(body)["detail"]["humanLoopName"] for body in sqs.drain(queue)}
    # Every message was either applied and deleted, or is still in the queue: never both, never neither.
    assert applied | left == set(events)
    assert applied & left == set()
    assert "SIGTERM finishes the batch in hand" in log.read_text()


def test_an_event_for_an_unknown_loop_through_the_queue_creates_it(sqs, world):
    queue, _dlq = sqs.create("events-unknown")
    event = make_event("only-in-a2i", "Failed", time=world.now, created=world.now - timedelta(hours=3),
                       failure_code="InternalError", failure_reason="boom")
    sqs.send(queue, event)
    consume_once(queue)
    loop = HumanLoop.objects.get(name="only-in-a2i")
    assert (loop.flow_definition, loop.status, loop.failure_code) == (world.fd_inv, "Failed", "InternalError")
