"""The SageMaker flow-definition calls (JSON 1.1): create, describe, list, delete, errors."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from .conftest import NO_RETRIES, error_of, raw_request, start


@pytest.fixture
def sagemaker(a2i):
    return a2i.client("sagemaker", config=NO_RETRIES)


def create(sagemaker, a2i, name, **overrides):
    params = {
        "FlowDefinitionName": name,
        "HumanLoopConfig": {
            "WorkteamArn": f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:workteam/private-crowd/team",
            "HumanTaskUiArn": f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:human-task-ui/ui",
            "TaskTitle": "Title", "TaskDescription": "Description", "TaskCount": 1,
            "TaskAvailabilityLifetimeInSeconds": 3600, "TaskTimeLimitInSeconds": 300, "TaskKeywords": ["Images"],
        },
        "OutputConfig": {"S3OutputPath": "s3://bucket/prefix"},
        "RoleArn": f"arn:aws:iam::{a2i.account_id}:role/service-role/A2IRole",
        **overrides,
    }
    return sagemaker.create_flow_definition(**params)["FlowDefinitionArn"]


def test_create_then_describe_returns_the_definition_and_epoch_creation_time(a2i, sagemaker):
    arn = create(sagemaker, a2i, "described-flow", Tags=[{"Key": "team", "Value": "Data Science: été"}])
    assert arn == f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:flow-definition/described-flow"
    described = sagemaker.describe_flow_definition(FlowDefinitionName="described-flow")
    assert described["FlowDefinitionStatus"] == "Active"
    assert described["FlowDefinitionArn"] == arn
    assert described["HumanLoopConfig"]["TaskAvailabilityLifetimeInSeconds"] == 3600
    assert described["OutputConfig"] == {"S3OutputPath": "s3://bucket/prefix"}
    assert described["RoleArn"].endswith(":role/service-role/A2IRole")
    assert abs(described["CreationTime"] - datetime.now(UTC)) < timedelta(seconds=10)
    status, _, body = raw_request(a2i, "POST", "/", {"FlowDefinitionName": "described-flow"},
                                  {"X-Amz-Target": "SageMaker.DescribeFlowDefinition",
                                   "Content-Type": "application/x-amz-json-1.1"})
    assert status == 200 and isinstance(body["CreationTime"], float)


def test_flow_definition_is_initializing_until_the_activation_delay_passes(a2i, sagemaker):
    a2i.configure(flow_definition_activation_delay=0.3)
    create(sagemaker, a2i, "slow-flow")
    assert sagemaker.describe_flow_definition(FlowDefinitionName="slow-flow")["FlowDefinitionStatus"] == "Initializing"
    time.sleep(0.35)
    assert sagemaker.describe_flow_definition(FlowDefinitionName="slow-flow")["FlowDefinitionStatus"] == "Active"


def test_duplicate_name_is_resource_in_use(a2i, sagemaker):
    create(sagemaker, a2i, "twice")
    with pytest.raises(sagemaker.exceptions.ResourceInUse) as excinfo:
        create(sagemaker, a2i, "twice")
    assert error_of(excinfo)[:2] == ("ResourceInUse", 400)


def test_describe_unknown_is_resource_not_found(sagemaker):
    with pytest.raises(sagemaker.exceptions.ResourceNotFound) as excinfo:
        sagemaker.describe_flow_definition(FlowDefinitionName="nothing-here")
    assert error_of(excinfo)[:2] == ("ResourceNotFound", 400)


def test_list_pages_through_every_flow_definition_in_both_orders(a2i, sagemaker):
    names = [f"flow-{n:02d}" for n in range(12)]
    for name in names:
        create(sagemaker, a2i, name)
    paginator = sagemaker.get_paginator("list_flow_definitions")
    listed = [s["FlowDefinitionName"] for p in paginator.paginate(PaginationConfig={"PageSize": 5})
              for s in p["FlowDefinitionSummaries"]]
    assert listed == list(reversed(names))
    listed = [s["FlowDefinitionName"] for p in paginator.paginate(SortOrder="Ascending",
                                                                   PaginationConfig={"PageSize": 5})
              for s in p["FlowDefinitionSummaries"]]
    assert listed == names
    summary = sagemaker.list_flow_definitions(MaxResults=1)["FlowDefinitionSummaries"][0]
    assert summary["FlowDefinitionStatus"] == "Active"


def test_list_filters_on_creation_time(a2i, sagemaker):
    create(sagemaker, a2i, "old-flow")
    time.sleep(0.01)
    boundary = datetime.now(UTC)
    time.sleep(0.01)
    create(sagemaker, a2i, "new-flow")
    after = [s["FlowDefinitionName"] for s in sagemaker.list_flow_definitions(
        CreationTimeAfter=boundary)["FlowDefinitionSummaries"]]
    before = [s["FlowDefinitionName"] for s in sagemaker.list_flow_definitions(
        CreationTimeBefore=boundary)["FlowDefinitionSummaries"]]
    assert (after, before) == (["new-flow"], ["old-flow"])


def test_delete_removes_the_flow_definition_and_its_loops(a2i, sagemaker, runtime):
    arn = create(sagemaker, a2i, "doomed-flow")
    start(runtime, arn, "orphan-to-be")
    sagemaker.delete_flow_definition(FlowDefinitionName="doomed-flow")
    with pytest.raises(sagemaker.exceptions.ResourceNotFound):
        sagemaker.describe_flow_definition(FlowDefinitionName="doomed-flow")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.list_human_loops(FlowDefinitionArn=arn)
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.describe_human_loop(HumanLoopName="orphan-to-be")
    create(sagemaker, a2i, "doomed-flow")  # the name is free again


def test_delete_unknown_is_resource_not_found(sagemaker):
    with pytest.raises(sagemaker.exceptions.ResourceNotFound):
        sagemaker.delete_flow_definition(FlowDefinitionName="nothing-here")


def test_delete_while_initializing_is_resource_in_use(a2i, sagemaker):
    a2i.configure(flow_definition_activation_delay=30)
    create(sagemaker, a2i, "not-ready")
    with pytest.raises(sagemaker.exceptions.ResourceInUse):
        sagemaker.delete_flow_definition(FlowDefinitionName="not-ready")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"FlowDefinitionName": "Bad_Name"}, "at 'flowDefinitionName' failed to satisfy constraint"),
        ({"FlowDefinitionName": "good-prefix_bad"}, "Value 'good-prefix_bad' at 'flowDefinitionName' failed to "
         "satisfy constraint: Member must satisfy regular expression pattern: [a-z0-9](-*[a-z0-9]){0,62}"),
        ({"Tags": [{"Key": "team!", "Value": "ok"}]},
         "Value 'team!' at 'tags.1.member.key' failed to satisfy constraint: Member must satisfy regular "
         "expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"),
        ({"HumanLoopConfig": {"WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/x",
                              "HumanTaskUiArn": "arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/x",
                              "TaskTitle": "t", "TaskDescription": "d", "TaskCount": 1,
                              "TaskKeywords": ["ok", "not ok!"]}},
         "Value 'not ok!' at 'humanLoopConfig.taskKeywords.2.member' failed to satisfy constraint"),
        ({"OutputConfig": {"S3OutputPath": "ftp://bucket/x"}}, "at 'outputConfig.s3OutputPath'"),
        ({"RoleArn": "arn:aws:iam::123:role/too-short-account"}, "at 'roleArn'"),
        ({"HumanLoopConfig": {"WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/x",
                              "HumanTaskUiArn": "arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/x",
                              "TaskTitle": "t", "TaskDescription": "d", "TaskCount": 4}},
         "Value '4' at 'humanLoopConfig.taskCount' failed to satisfy constraint: "
         "Member must have value less than or equal to 3"),
        ({"HumanLoopConfig": {"WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/x",
                              "HumanTaskUiArn": "arn:aws:sagemaker:us-east-1:123456789012:human-task-ui/x",
                              "TaskTitle": "t", "TaskDescription": "d", "TaskCount": 1,
                              "TaskAvailabilityLifetimeInSeconds": 10**20}},
         "at 'humanLoopConfig.taskAvailabilityLifetimeInSeconds' failed to satisfy constraint: "
         "Member must have value less than or equal to 2147483647"),
        ({"HumanLoopRequestSource": {"AwsManagedHumanLoopRequestSource": "AWS/Unknown/V1"}},
         "at 'humanLoopRequestSource.awsManagedHumanLoopRequestSource'"),
    ],
)
def test_invalid_create_is_a_validation_exception(a2i, sagemaker, overrides, expected):
    with pytest.raises(sagemaker.exceptions.ClientError) as excinfo:
        create(sagemaker, a2i, "valid-name", **overrides)
    code, status, message = error_of(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert expected in message


def test_list_max_results_above_100_is_a_validation_exception(sagemaker):
    with pytest.raises(sagemaker.exceptions.ClientError) as excinfo:
        sagemaker.list_flow_definitions(MaxResults=101)
    assert error_of(excinfo)[:2] == ("ValidationException", 400)


def test_unimplemented_sagemaker_operation_is_a_clear_unknown_operation_error(a2i):
    status, headers, body = raw_request(a2i, "POST", "/", {}, {"X-Amz-Target": "SageMaker.ListEndpoints",
                                                               "Content-Type": "application/x-amz-json-1.1"})
    assert status == 400
    assert body["__type"] == "UnknownOperationException" == headers["x-amzn-errortype"]
    assert "SageMaker.ListEndpoints" in body["Message"]


def test_unimplemented_operation_through_boto3_raises_a_client_error(a2i):
    sagemaker = a2i.client("sagemaker", config=NO_RETRIES)
    with pytest.raises(sagemaker.exceptions.ClientError) as excinfo:
        sagemaker.list_endpoints()
    assert error_of(excinfo)[:2] == ("UnknownOperationException", 400)
