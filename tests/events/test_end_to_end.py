"""A2I Local's events reaching the dashboard with no sync at all (through the endpoint, and
through SQS), and a mixed stream of events and syncs that ends equal to A2I's listing."""

import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command

from a2i_local.events import build_event
from a2i_local.testing import a2i_local_server
from loops.models import FlowDefinition, HumanLoop, ReceivedEvent, SyncRun
from loops.services.discovery import discover_flow_definitions
from loops.services.sync import sync_flow_definition

from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


@pytest.fixture
def a2i_local_process(aws, endpoint, tmp_path):
    """`python -m a2i_local serve` with --event-webhook and --event-webhook-token at the live dashboard."""
    log = tmp_path / "a2i-local.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "a2i_local", "serve", "--port", "0", "--stop-delay", "0",
         "--s3-endpoint", aws.s3_url, "--event-webhook", endpoint.url, f"--event-webhook-token={TOKEN}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
    )
    try:
        match = re.search(r"listening on (http://\S+)", process.stdout.readline())
        assert match, log.read_text()
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: its threads get 5 s each to stop
            process.kill()
            process.wait(timeout=10)


def test_a_loop_completed_in_a2i_local_shows_completed_without_any_sync(a2i_local_process, aws, viewer_client):
    import boto3

    url = a2i_local_process
    clients = {name: boto3.client(name, endpoint_url=url, region_name=aws.region, aws_access_key_id="t",
                                  aws_secret_access_key="t") for name in ("sagemaker", "sagemaker-a2i-runtime")}
    prefix = f"arn:aws:sagemaker:{aws.region}:{aws.account_id}"
    fd_arn = clients["sagemaker"].create_flow_definition(
        FlowDefinitionName="live-flow", OutputConfig={"S3OutputPath": "s3://a2i-local-output/live"},
        RoleArn=f"arn:aws:iam::{aws.account_id}:role/a2i", HumanLoopConfig={
            "WorkteamArn": f"{prefix}:workteam/private-crowd/t", "HumanTaskUiArn": f"{prefix}:human-task-ui/t",
            "TaskTitle": "t", "TaskDescription": "t", "TaskCount": 1,
        },
    )["FlowDefinitionArn"]
    clients["sagemaker-a2i-runtime"].start_human_loop(
        HumanLoopName="live-loop", FlowDefinitionArn=fd_arn, HumanLoopInput={"InputContent": '{"doc": 1}'}
    )
    request = urllib.request.Request(f"{url}/_local/human-loops/live-loop/complete", method="POST",
                                     data=json.dumps({"answerContent": {"label": "cat"}, "workerId": "w-1"}).encode())
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    wait_for(lambda: HumanLoop.objects.filter(name="live-loop", status="Completed").exists(), 10, "the event applied")
    latency = time.monotonic() - started
    assert latency < 5, latency  # the freshness target itself is measured in bench/events.py

    assert not SyncRun.objects.exists()  # no sync, no discovery: the event alone
    loop = HumanLoop.objects.get(name="live-loop")
    assert loop.flow_definition.arn == fd_arn
    page = viewer_client.get(f"/loops/{loop.pk}/").content.decode()
    assert '<span class="badge status-completed">Completed</span>' in page
    assert "A2I’s time" in page
    assert "cat" in page  # the answer, read from the output.json A2I Local wrote


@pytest.mark.django_db(transaction=True)  # the consumer's thread writes on a connection of its own
def test_events_sent_to_an_sqs_queue_reach_the_dashboard_through_the_consumer(sqs, aws):
    queue, _dlq = sqs.create("a2i-local-events")
    with a2i_local_server(s3_endpoint=aws.s3_url, event_queue_url=queue, stop_delay_seconds=0) as a2i:
        arn = a2i.create_flow_definition("queued-flow")
        runtime = a2i.client("sagemaker-a2i-runtime")
        for name in ("q-done", "q-failed", "q-stopped"):
            runtime.start_human_loop(HumanLoopName=name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})
        a2i.complete("q-done", answer={"label": "x"})
        a2i.fail("q-failed", "Expired", "expired")
        runtime.stop_human_loop(HumanLoopName="q-stopped")
        assert a2i.server.events.wait_idle(10)
        assert a2i.server.events.delivered == 3

    wait_for(lambda: sqs.count(queue) == 3, 5, "three messages in the queue")
    call_command("consume_events", "--queue-url", queue, "--once")
    stored = dict(HumanLoop.objects.filter(flow_definition__arn=arn).values_list("name", "status"))
    assert stored == {"q-done": "Completed", "q-failed": "Failed", "q-stopped": "Stopped"}
    assert HumanLoop.objects.get(name="q-failed").failure_code == "Expired"
    assert sqs.count(queue) == 0


def test_a2i_local_retries_the_queue_until_it_exists(sqs, aws):
    # The queue is created after the first attempts failed: same retry rule as the webhook.
    queue_url = f"{aws.s3_url}/{aws.account_id}/late-queue"
    with a2i_local_server(s3_endpoint=aws.s3_url, event_queue_url=queue_url, stop_delay_seconds=0) as a2i:
        arn = a2i.create_flow_definition("late-flow")
        a2i.client("sagemaker-a2i-runtime").start_human_loop(
            HumanLoopName="late-loop", FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})
        a2i.complete("late-loop", answer={})
        time.sleep(0.5)
        sqs.client.create_queue(QueueName="late-queue")
        assert a2i.server.events.wait_idle(15)
    (body,) = sqs.drain(queue_url)
    assert json.loads(body)["detail"]["humanLoopName"] == "late-loop"


def test_after_a_mixed_stream_of_events_and_syncs_the_copy_equals_a2i(endpoint, aws):
    """Events delivered late, twice, out of order, or never before a sync; syncs in between;
    deleted loops and reused names. At the end the copy equals A2I's listing, and every
    change an event reported carries A2I's time."""
    rng = random.Random(7)
    arn = aws.create_flow_definition("mixed-flow")
    discover_flow_definitions([aws.region])
    fd = FlowDefinition.objects.get(arn=arn)
    runtime = aws.client("sagemaker-a2i-runtime")
    pending: list[dict] = []  # emitted by A2I Local, not delivered yet
    emitted: list[dict] = []
    late: list[dict] = []  # held back until the end
    delivered: list[dict] = []

    def collect(loop):
        if loop["HumanLoopStatus"] in ("Completed", "Failed", "Stopped"):
            event = build_event(loop, region=aws.region, account_id=aws.account_id)
            pending.append(event)
            emitted.append(event)

    def start(name):
        runtime.start_human_loop(HumanLoopName=name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})

    def deliver(count):
        rng.shuffle(pending)  # out of order
        batch = [pending.pop() for _ in range(min(count, len(pending)))]
        batch += rng.sample(delivered, min(2, len(delivered)))  # redeliveries
        delivered.extend(batch)
        for i in range(0, len(batch), 3):
            assert endpoint.post(batch[i:i + 3]).status_code == 202

    aws.store.subscribe(collect)
    try:
        names = [f"mix-{i}" for i in range(40)]
        for name in names[:25]:
            start(name)
        sync_flow_definition(fd.pk, full=True)
        for name in names[25:]:
            start(name)  # these the sync never sees InProgress
        live = list(names)
        for round_number in range(6):
            for name in rng.sample(live, 6):
                fate = rng.choice(["complete", "fail", "stop"])
                if runtime.describe_human_loop(HumanLoopName=name)["HumanLoopStatus"] != "InProgress":
                    continue
                if fate == "complete":
                    aws.complete(name, answer={"label": "ok"})
                elif fate == "fail":
                    aws.fail(name, rng.choice(["Expired", "InternalError", "ValidationError"]), f"failed in {round_number}")
                else:
                    runtime.stop_human_loop(HumanLoopName=name)
            if round_number == 2:
                # Two loops that just ended are deleted and their names reused (no event for a
                # delete); their events arrive only after the new loops' ones: stale.
                ended = sorted({e["detail"]["humanLoopName"] for e in pending})[:2]
                for name in ended:
                    runtime.delete_human_loop(HumanLoopName=name)
                    start(name)
                late.extend(e for e in pending if e["detail"]["humanLoopName"] in ended)
                pending[:] = [e for e in pending if e["detail"]["humanLoopName"] not in ended]
                assert sync_flow_definition(fd.pk, full=False).outcome == "succeeded"  # the copy knows the new loops
            time.sleep(1.05)  # events carry whole seconds: let A2I's times differ from round to round
            deliver(rng.randint(0, len(pending)))
            if rng.random() < 0.6:
                run = sync_flow_definition(fd.pk, full=rng.random() < 0.3)
                assert run.outcome == "succeeded", run.error
        deliver(len(pending))
        assert endpoint.post(late).json()["stale"] == len(late) == 2
        run = sync_flow_definition(fd.pk, full=True)
        assert run.outcome == "succeeded", run.error
    finally:
        aws.store.unsubscribe(collect)

    listing = {s["HumanLoopName"]: s for page in runtime.get_paginator("list_human_loops").paginate(FlowDefinitionArn=arn)
               for s in page["HumanLoopSummaries"]}
    stored = {loop.name: loop for loop in HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False)}
    assert stored.keys() == listing.keys()
    for name, summary in listing.items():
        loop = stored[name]
        assert (loop.status, loop.creation_time, loop.failure_reason, loop.flow_definition.arn) == (
            summary["HumanLoopStatus"], summary["CreationTime"], summary.get("FailureReason") or "",
            summary["FlowDefinitionArn"],
        ), name
        if loop.status == "Failed":
            assert loop.failure_code == runtime.describe_human_loop(HumanLoopName=name)["FailureCode"], name

    # Every change an event reported is one history row, at the event's time; the history of
    # each loop is a chain (each row starts where the previous one ended, or is a first sight).
    for event in emitted:
        detail = event["detail"]
        loop = HumanLoop.objects.get(arn=detail["humanLoopArn"])
        if loop.creation_time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:23] + "Z" != detail["creationTime"]:
            continue  # an event of a deleted loop whose name was reused: stale, recorded as such
        rows = list(loop.status_changes.order_by("id"))
        # Since the name's last first sight (a sync's first sight of a loop writes no row).
        this_loop = rows[max((i for i, r in enumerate(rows) if r.from_status == ""), default=0):]
        (row,) = [r for r in this_loop if r.to_status == detail["humanLoopStatus"]]
        assert (row.source, row.observed_at.strftime("%Y-%m-%dT%H:%M:%SZ")) == ("event", event["time"]), loop.name
        assert loop.status_changed_at == row.observed_at
    for loop in HumanLoop.objects.filter(flow_definition=fd):
        rows = list(loop.status_changes.order_by("id").values_list("from_status", "to_status"))
        for (_, previous_to), (from_status, to_status) in zip(rows, rows[1:], strict=False):
            assert from_status in (previous_to, ""), (loop.name, rows)
            assert to_status != from_status
    assert set(ReceivedEvent.objects.values_list("result", flat=True)) == {"applied", "duplicate", "stale"}
