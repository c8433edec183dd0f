"""DescribeHumanLoop: every field, the wire timestamp format, routing quirks and errors."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import error_of, raw_request, start


def test_describe_returns_every_field_of_an_in_progress_loop(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "described")
    loop = runtime.describe_human_loop(HumanLoopName="described")
    assert loop["HumanLoopName"] == "described"
    assert loop["HumanLoopArn"].endswith(":human-loop/described")
    assert loop["FlowDefinitionArn"] == flow_arn
    assert loop["HumanLoopStatus"] == "InProgress"
    assert abs(loop["CreationTime"] - datetime.now(UTC)) < timedelta(seconds=10)
    assert loop["HumanLoopOutput"]["OutputS3Uri"].endswith("/described/output.json")
    assert "FailureCode" not in loop and "FailureReason" not in loop


def test_creation_time_is_sent_as_iso8601_with_milliseconds_and_z(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "wire-format")
    status, headers, body = raw_request(a2i, "GET", "/human-loops/wire-format")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["CreationTime"])


def test_failed_loop_shows_failure_code_and_reason(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "broken")
    a2i.fail("broken", "ValidationError", "The answer did not match the schema.")
    loop = runtime.describe_human_loop(HumanLoopName="broken")
    assert loop["HumanLoopStatus"] == "Failed"
    assert loop["FailureCode"] == "ValidationError"
    assert loop["FailureReason"] == "The answer did not match the schema."


def test_a_loop_named_stop_can_be_described(runtime, flow_arn):
    start(runtime, flow_arn, "stop")
    assert runtime.describe_human_loop(HumanLoopName="stop")["HumanLoopName"] == "stop"


def test_unknown_loop_is_a_404_resource_not_found(runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as excinfo:
        runtime.describe_human_loop(HumanLoopName="never-started")
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert "never-started" in message


def test_invalid_name_is_a_validation_error(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.describe_human_loop(HumanLoopName="Not_Valid")
    assert "at 'humanLoopName'" in error_of(excinfo)[2]
