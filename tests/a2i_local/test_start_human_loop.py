"""StartHumanLoop: creation, idempotency, conflicts, flow-definition state and validation."""

import json

import pytest

from .conftest import error_of, start


def test_start_returns_the_loop_arn_and_the_loop_is_in_progress(a2i, runtime, flow_arn):
    arn = start(runtime, flow_arn, "first-loop")
    assert arn == f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:human-loop/first-loop"
    assert runtime.describe_human_loop(HumanLoopName="first-loop")["HumanLoopStatus"] == "InProgress"


def test_same_name_and_identical_input_returns_the_same_loop(a2i, runtime, flow_arn):
    first = start(runtime, flow_arn, "retry-me", {"a": 1})
    created = runtime.describe_human_loop(HumanLoopName="retry-me")["CreationTime"]
    assert start(runtime, flow_arn, "retry-me", {"a": 1}) == first
    assert runtime.describe_human_loop(HumanLoopName="retry-me")["CreationTime"] == created
    assert a2i.store.count_loops() == 1


def test_same_name_with_different_input_is_a_409_conflict(runtime, flow_arn):
    start(runtime, flow_arn, "taken", {"a": 1})
    with pytest.raises(runtime.exceptions.ConflictException) as excinfo:
        start(runtime, flow_arn, "taken", {"a": 2})
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ConflictException", 409)
    assert "taken" in message


def test_same_name_on_another_flow_definition_is_a_conflict(a2i, runtime, flow_arn):
    other = a2i.create_flow_definition("other-flow")
    start(runtime, flow_arn, "shared-name", {"a": 1})
    with pytest.raises(runtime.exceptions.ConflictException):
        start(runtime, other, "shared-name", {"a": 1})


def test_name_of_a_completed_loop_stays_taken_until_deleted(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "reused", {"a": 1})
    a2i.complete("reused", answer={"ok": True})
    with pytest.raises(runtime.exceptions.ConflictException):
        start(runtime, flow_arn, "reused", {"a": 2})
    runtime.delete_human_loop(HumanLoopName="reused")
    start(runtime, flow_arn, "reused", {"a": 2})
    assert runtime.describe_human_loop(HumanLoopName="reused")["HumanLoopStatus"] == "InProgress"


def test_unknown_flow_definition_is_a_validation_error(a2i, runtime):
    missing = f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:flow-definition/missing"
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        start(runtime, missing, "orphan")
    code, status, message = error_of(excinfo)
    assert status == 400 and "does not exist" in message


def test_initializing_flow_definition_is_a_validation_error(a2i, runtime):
    a2i.configure(flow_definition_activation_delay=30)
    arn = a2i.client("sagemaker").create_flow_definition(
        FlowDefinitionName="slow-flow",
        OutputConfig={"S3OutputPath": "s3://a2i-local-output/out"},
        RoleArn=f"arn:aws:iam::{a2i.account_id}:role/tests",
    )["FlowDefinitionArn"]
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        start(runtime, arn, "too-early")
    assert "Initializing" in error_of(excinfo)[2]


def test_output_s3_uri_follows_the_documented_layout(a2i, runtime):
    arn = a2i.create_flow_definition("layout-flow", output_path="s3://my-bucket/a2i/results/")
    start(runtime, arn, "layout-loop")
    loop = runtime.describe_human_loop(HumanLoopName="layout-loop")
    created = loop["CreationTime"].astimezone(__import__("datetime").timezone.utc)
    expected = (f"s3://my-bucket/a2i/results/layout-flow/{created:%Y/%m/%d/%H/%M/%S}/layout-loop/output.json")
    assert loop["HumanLoopOutput"]["OutputS3Uri"] == expected


def test_content_classifiers_are_accepted(runtime, flow_arn):
    start(runtime, flow_arn, "classified", DataAttributes={
        "ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]})
    assert runtime.describe_human_loop(HumanLoopName="classified")["HumanLoopStatus"] == "InProgress"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"HumanLoopName": "x" * 64},
         "Value '" + "x" * 64 + "' at 'humanLoopName' failed to satisfy constraint: "
         "Member must have length less than or equal to 63"),
        ({"HumanLoopName": "Upper-Case"},
         "Value 'Upper-Case' at 'humanLoopName' failed to satisfy constraint: "
         "Member must satisfy regular expression pattern: ^[a-z0-9](-*[a-z0-9])*$"),
        ({"HumanLoopName": "trailing-"}, "at 'humanLoopName' failed to satisfy constraint"),
        ({"FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:123:flow-definition/x"},
         "at 'flowDefinitionArn' failed to satisfy constraint: Member must satisfy regular expression pattern"),
        ({"HumanLoopInput": {"InputContent": "{not json"}},
         "at 'humanLoopInput.inputContent' failed to satisfy constraint: "
         "Member must be a string representation of a file in JSON format"),
        ({"HumanLoopInput": {"InputContent": json.dumps({"x": "y" * 3_145_728})}},
         "Value at 'humanLoopInput.inputContent' failed to satisfy constraint: "
         "Member must have length less than or equal to 3145728"),
        ({"DataAttributes": {"ContentClassifiers": ["FreeOfMalware"]}},
         "at 'dataAttributes.contentClassifiers' failed to satisfy constraint: Member must satisfy constraint: "
         "[Member must satisfy enum value set: [FreeOfPersonallyIdentifiableInformation, FreeOfAdultContent]]"),
        ({"DataAttributes": {"ContentClassifiers": ["FreeOfAdultContent"] * 257}},
         "Member must have length less than or equal to 256"),
    ],
)
def test_invalid_parameters_are_a_validation_error_naming_field_and_constraint(runtime, flow_arn, kwargs, expected):
    params = {"HumanLoopName": "valid-name", "FlowDefinitionArn": flow_arn,
              "HumanLoopInput": {"InputContent": "{}"}, **kwargs}
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.start_human_loop(**params)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("1 validation error detected: ")
    assert expected in message


def test_several_violations_are_reported_together(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.start_human_loop(HumanLoopName="Bad_Name", FlowDefinitionArn="not-an-arn",
                                 HumanLoopInput={"InputContent": "{}"})
    message = error_of(excinfo)[2]
    assert message.startswith("2 validation errors detected: ")
    assert "'humanLoopName'" in message and "'flowDefinitionArn'" in message


def test_mixed_case_names_are_accepted_when_strict_names_is_off(a2i, runtime, flow_arn):
    a2i.configure(strict_names=False)
    start(runtime, flow_arn, "Fraud-detector-1613668909838")
    loop = runtime.describe_human_loop(HumanLoopName="Fraud-detector-1613668909838")
    assert "/Fraud-detector-1613668909838/output.json" in loop["HumanLoopOutput"]["OutputS3Uri"]


def test_max_active_loops_quota_is_a_402(a2i, runtime, flow_arn):
    a2i.configure(max_active_loops=1)
    start(runtime, flow_arn, "only-one")
    with pytest.raises(runtime.exceptions.ServiceQuotaExceededException) as excinfo:
        start(runtime, flow_arn, "one-too-many")
    assert error_of(excinfo)[:2] == ("ServiceQuotaExceededException", 402)
    # An idempotent retry of an existing loop is not a new active loop.
    start(runtime, flow_arn, "only-one")
