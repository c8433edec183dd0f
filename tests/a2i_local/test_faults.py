"""Injected faults and the active-loop quota, each observed by a real boto3 client with retries off."""

import json
import time

import pytest
from botocore.config import Config

# botocore's retries "max_attempts" counts retries after the first try (1 would mean two
# attempts); total_max_attempts=1 is a single attempt, so each fault reaches the test.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture
def client(a2i):
    return a2i.client("sagemaker-a2i-runtime", config=NO_RETRIES)


@pytest.fixture
def flow_arn(a2i):
    return a2i.create_flow_definition("faults-flow")


def start(client, flow_arn, name):
    return client.start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=flow_arn, HumanLoopInput={"InputContent": json.dumps({"n": name})}
    )


def assert_aws_error(excinfo, code, status):
    error = excinfo.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["ResponseMetadata"]["RetryAttempts"] == 0  # the fault was observed, not retried away
    assert error["Error"]["Message"]


def test_faults_are_off_by_default(a2i, client, flow_arn):
    for _ in range(20):
        client.list_human_loops(FlowDefinitionArn=flow_arn)
    assert a2i.options.throttle_tps is None
    assert a2i.options.error_rate == 0.0
    assert a2i.options.latency_ms == 0
    assert a2i.options.max_active_loops is None


def test_throttle_rejects_requests_beyond_the_bucket_with_429(a2i, client, flow_arn):
    a2i.configure(throttle_tps=1)
    client.list_human_loops(FlowDefinitionArn=flow_arn)  # the single token of the burst
    with pytest.raises(client.exceptions.ThrottlingException) as excinfo:
        client.list_human_loops(FlowDefinitionArn=flow_arn)
    assert_aws_error(excinfo, "ThrottlingException", 429)


def test_throttle_buckets_are_per_operation_and_refill(a2i, client, flow_arn):
    start(client, flow_arn, "per-op")
    a2i.configure(throttle_tps=1)
    client.list_human_loops(FlowDefinitionArn=flow_arn)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.list_human_loops(FlowDefinitionArn=flow_arn)
    # Another operation has its own full bucket.
    assert client.describe_human_loop(HumanLoopName="per-op")["HumanLoopName"] == "per-op"
    time.sleep(1.1)  # 1 token per second: one is back
    client.list_human_loops(FlowDefinitionArn=flow_arn)


def test_throttle_burst_is_one_second_of_traffic(a2i, client, flow_arn):
    client.list_human_loops(FlowDefinitionArn=flow_arn)  # connect before the clock starts
    a2i.configure(throttle_tps=3)
    started = time.monotonic()
    allowed = 0
    for _ in range(10):
        try:
            client.list_human_loops(FlowDefinitionArn=flow_arn)
            allowed += 1
        except client.exceptions.ThrottlingException:
            pass
    elapsed = time.monotonic() - started
    # A full bucket of 3, plus whatever refilled at 3 tokens/s while the requests ran.
    # On a loaded machine the requests can be slow enough to refill the bucket, so the
    # upper bound grows with the elapsed time instead of being a fixed 3.
    assert 3 <= allowed <= 3 + int(elapsed * 3) + 1


def test_throttle_can_be_switched_off_live(a2i, client, flow_arn):
    a2i.configure(throttle_tps=1)
    client.list_human_loops(FlowDefinitionArn=flow_arn)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.list_human_loops(FlowDefinitionArn=flow_arn)
    a2i.configure(throttle_tps=None)
    for _ in range(5):
        client.list_human_loops(FlowDefinitionArn=flow_arn)


def test_error_rate_one_fails_every_operation_with_500(a2i, client, flow_arn):
    a2i.configure(error_rate=1.0)
    with pytest.raises(client.exceptions.InternalServerException) as excinfo:
        client.list_human_loops(FlowDefinitionArn=flow_arn)
    assert_aws_error(excinfo, "InternalServerException", 500)
    with pytest.raises(client.exceptions.InternalServerException):
        start(client, flow_arn, "never-started")
    a2i.configure(error_rate=0.0)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_human_loop(HumanLoopName="never-started")


def test_error_rate_half_fails_some_requests_and_not_others(a2i, client, flow_arn):
    a2i.configure(error_rate=0.5)
    outcomes = []
    for _ in range(60):
        try:
            client.list_human_loops(FlowDefinitionArn=flow_arn)
            outcomes.append("ok")
        except client.exceptions.InternalServerException:
            outcomes.append("500")
    # P(all 60 the same) is 2 * 0.5**60: this cannot fail by chance in practice.
    assert "ok" in outcomes and "500" in outcomes


def test_faults_do_not_touch_the_local_control_api(a2i, client, flow_arn):
    start(client, flow_arn, "control-ok")
    a2i.configure(error_rate=1.0, throttle_tps=1)
    for _ in range(3):
        a2i.configure(error_rate=1.0)  # /_local/config itself is never faulted
    a2i.complete("control-ok", answer={"label": "cat"})
    a2i.configure(error_rate=0.0, throttle_tps=None)
    assert client.describe_human_loop(HumanLoopName="control-ok")["HumanLoopStatus"] == "Completed"


def test_latency_is_added_to_every_request(a2i, client, flow_arn):
    a2i.configure(latency_ms=300)
    started = time.perf_counter()
    client.list_human_loops(FlowDefinitionArn=flow_arn)
    assert time.perf_counter() - started >= 0.3
    # Throttled and failed requests are delayed too (latency comes first).
    a2i.configure(error_rate=1.0)
    started = time.perf_counter()
    with pytest.raises(client.exceptions.InternalServerException):
        client.list_human_loops(FlowDefinitionArn=flow_arn)
    assert time.perf_counter() - started >= 0.3


def test_max_active_loops_answers_402_once_the_quota_is_in_progress(a2i, client, flow_arn):
    a2i.configure(max_active_loops=2)
    start(client, flow_arn, "quota-1")
    start(client, flow_arn, "quota-2")
    with pytest.raises(client.exceptions.ServiceQuotaExceededException) as excinfo:
        start(client, flow_arn, "quota-3")
    assert_aws_error(excinfo, "ServiceQuotaExceededException", 402)
    # The rejected loop was not created.
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_human_loop(HumanLoopName="quota-3")
    # A loop that leaves InProgress frees a slot.
    a2i.complete("quota-1", answer={"label": "dog"})
    start(client, flow_arn, "quota-3")
    assert client.describe_human_loop(HumanLoopName="quota-3")["HumanLoopStatus"] == "InProgress"
