"""The simulated workforce, observed through boto3: it completes, fails, lets expire and starts loops."""

import json
import time
from urllib.parse import urlparse

import pytest

from a2i_local.config import Options
from a2i_local.testing import a2i_local_server
from a2i_local.workforce import fate_of, sample_review_seconds

FAST = dict(
    workforce=True,
    workforce_tick_seconds=0.1,
    workforce_review_seconds_median=0.3,
    workforce_review_seconds_p90=0.8,
    workforce_failure_rate=0.3,
    workforce_abandon_rate=0.0,
    workforce_start_rate=0.0,
)


@pytest.fixture
def server_with(a2i_server):
    """A separate A2I Local with the workforce on (it is started with the server), sharing the session's S3."""

    def start(**overrides):
        return a2i_local_server(s3_endpoint=a2i_server.s3_url, **{**FAST, **overrides})

    return start


def all_loops(runtime, flow_arn):
    pages = runtime.get_paginator("list_human_loops").paginate(FlowDefinitionArn=flow_arn)
    return [summary for page in pages for summary in page["HumanLoopSummaries"]]


def wait_until(predicate, timeout=20.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def start_loops(runtime, flow_arn, count, prefix):
    for n in range(count):
        runtime.start_human_loop(
            HumanLoopName=f"{prefix}-{n}",
            FlowDefinitionArn=flow_arn,
            HumanLoopInput={"InputContent": json.dumps({"text": f"item {n}"})},
        )


def test_workforce_completes_and_fails_loops_and_writes_output(server_with):
    with server_with() as a2i:
        flow_arn = a2i.create_flow_definition("workforce-flow")
        runtime = a2i.client("sagemaker-a2i-runtime")
        start_loops(runtime, flow_arn, 20, "wf-test")

        def everything_reviewed():
            loops = all_loops(runtime, flow_arn)
            return loops if all(s["HumanLoopStatus"] != "InProgress" for s in loops) else None

        loops = wait_until(everything_reviewed)
        statuses = {s["HumanLoopStatus"] for s in loops}
        assert statuses == {"Completed", "Failed"}  # 30% failure rate over 20 loops
        for summary in loops:
            expected = fate_of(summary["HumanLoopName"], a2i.options).action
            assert summary["HumanLoopStatus"] == {"complete": "Completed", "fail": "Failed"}[expected]

        failed = next(s for s in loops if s["HumanLoopStatus"] == "Failed")
        described = runtime.describe_human_loop(HumanLoopName=failed["HumanLoopName"])
        assert described["FailureCode"] in {"InternalError", "ValidationError"}
        assert described["FailureReason"]

        done = next(s for s in loops if s["HumanLoopStatus"] == "Completed")
        described = runtime.describe_human_loop(HumanLoopName=done["HumanLoopName"])
        uri = urlparse(described["HumanLoopOutput"]["OutputS3Uri"])
        body = a2i.client("s3").get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read()
        output = json.loads(body)
        assert output["humanLoopName"] == done["HumanLoopName"]
        assert output["flowDefinitionArn"] == flow_arn
        assert output["inputContent"] == {"text": "item " + done["HumanLoopName"].rsplit("-", 1)[1]}
        (answer,) = output["humanAnswers"]
        assert set(answer["answerContent"]) == {"label", "confidence"}
        assert answer["workerId"]
        assert answer["timeSpentInSeconds"] >= 0


def test_workforce_starts_new_loops_on_active_flow_definitions(server_with):
    with server_with(workforce_start_rate=20.0, workforce_review_seconds_median=600, workforce_review_seconds_p90=900) as a2i:
        first = a2i.create_flow_definition("workforce-start-a")
        second = a2i.create_flow_definition("workforce-start-b")
        runtime = a2i.client("sagemaker-a2i-runtime")

        def started_on_both():
            a, b = all_loops(runtime, first), all_loops(runtime, second)
            return (a, b) if len(a) + len(b) >= 10 and a and b else None

        a, b = wait_until(started_on_both, timeout=15)
        loop = runtime.describe_human_loop(HumanLoopName=a[0]["HumanLoopName"])
        assert loop["HumanLoopStatus"] == "InProgress"
        assert loop["FlowDefinitionArn"] == first
        # The simulated start rate can be changed live; at 0 nothing new starts.
        a2i.configure(workforce_start_rate=0.0)
        time.sleep(0.3)
        before = len(all_loops(runtime, first)) + len(all_loops(runtime, second))
        time.sleep(1.0)
        assert len(all_loops(runtime, first)) + len(all_loops(runtime, second)) == before


def test_abandoned_loops_expire_through_the_store(server_with):
    with server_with(workforce_abandon_rate=1.0) as a2i:
        flow_arn = a2i.create_flow_definition("workforce-abandon", task_availability_lifetime_seconds=1)
        runtime = a2i.client("sagemaker-a2i-runtime")
        start_loops(runtime, flow_arn, 3, "abandoned")

        def expired():
            loops = [runtime.describe_human_loop(HumanLoopName=f"abandoned-{n}") for n in range(3)]
            return loops if all(loop["HumanLoopStatus"] == "Failed" for loop in loops) else None

        for loop in wait_until(expired, timeout=15):
            assert loop["FailureCode"] == "Expired"


def test_workforce_is_off_by_default(a2i):
    assert Options().workforce is False
    flow_arn = a2i.create_flow_definition("workforce-off")
    runtime = a2i.client("sagemaker-a2i-runtime")
    # Even with a review time of ~0 s, nobody reviews or starts loops when the workforce is off.
    a2i.configure(workforce_review_seconds_median=0.01, workforce_review_seconds_p90=0.02, workforce_start_rate=50.0)
    start_loops(runtime, flow_arn, 3, "nobody")
    time.sleep(1.5)
    loops = all_loops(runtime, flow_arn)
    assert sorted(s["HumanLoopName"] for s in loops) == ["nobody-0", "nobody-1", "nobody-2"]
    assert {s["HumanLoopStatus"] for s in loops} == {"InProgress"}


def test_review_times_follow_the_configured_median_and_p90():
    options = Options(workforce_review_seconds_median=120.0, workforce_review_seconds_p90=900.0)
    times = sorted(fate_of(f"loop-{n}", options).review_seconds for n in range(4000))
    assert 100 < times[2000] < 140
    assert 750 < times[3600] < 1050
    assert sample_review_seconds(0.5, 120.0, 900.0) == pytest.approx(120.0)
    assert sample_review_seconds(0.9, 120.0, 900.0) == pytest.approx(900.0, rel=1e-6)
    # Same name, same fate: a loop is not re-rolled on every tick.
    assert fate_of("same-name", options) == fate_of("same-name", options)
