"""Bad input of every shape gets a clear 4xx, never a 500 (house rule), on every route."""

import itertools
import json

import pytest

from .conftest import raw_request

WRONG_VALUES = [None, 0, -1, 10**20, 1.5, True, "", "x" * 2000, [], ["a"], {}, {"a": 1}, "Ünïcödé ✓"]

RUNTIME_FIELDS = {
    "/human-loops": ["HumanLoopName", "FlowDefinitionArn", "HumanLoopInput", "DataAttributes"],
    "/human-loops/stop": ["HumanLoopName"],
}
SAGEMAKER_FIELDS = {
    "CreateFlowDefinition": ["FlowDefinitionName", "HumanLoopRequestSource", "HumanLoopActivationConfig",
                             "HumanLoopConfig", "OutputConfig", "RoleArn", "Tags"],
    "DescribeFlowDefinition": ["FlowDefinitionName"],
    "ListFlowDefinitions": ["CreationTimeAfter", "CreationTimeBefore", "SortOrder", "NextToken", "MaxResults"],
    "DeleteFlowDefinition": ["FlowDefinitionName"],
}


@pytest.mark.parametrize("path", list(RUNTIME_FIELDS))
def test_runtime_posts_with_wrongly_typed_members_are_4xx(a2i, flow_arn, path):
    valid = {"HumanLoopName": "ok-name", "FlowDefinitionArn": flow_arn, "HumanLoopInput": {"InputContent": "{}"}}
    for field, value in itertools.product(RUNTIME_FIELDS[path], WRONG_VALUES):
        body = {**valid, field: value}
        status, headers, reply = raw_request(a2i, "POST", path, body)
        assert status < 500, (field, value, reply)
    for raw in [b"null", b"[]", b"\"text\"", b"{", b"\xff\xfe", b"{\"HumanLoopInput\": {\"InputContent\": 5}}"]:
        status, headers, reply = raw_request(a2i, "POST", path, raw)
        assert 400 <= status < 500, (raw, reply)
        assert headers["x-amzn-errortype"]


@pytest.mark.parametrize("operation", list(SAGEMAKER_FIELDS))
def test_sagemaker_calls_with_wrongly_typed_members_are_400(a2i, operation):
    headers = {"X-Amz-Target": f"SageMaker.{operation}", "Content-Type": "application/x-amz-json-1.1"}
    for field, value in itertools.product(SAGEMAKER_FIELDS[operation], WRONG_VALUES):
        status, _, reply = raw_request(a2i, "POST", "/", {field: value}, headers)
        assert status in (200, 400), (field, value, reply)
    nested = {"FlowDefinitionName": "n", "OutputConfig": {"S3OutputPath": 5, "KmsKeyId": []}, "RoleArn": None,
              "HumanLoopConfig": {"TaskKeywords": [None, 5], "PublicWorkforceTaskPrice": {"AmountInUsd": 3}},
              "Tags": [None, {"Key": 1}], "HumanLoopActivationConfig": {"HumanLoopActivationConditionsConfig": []}}
    status, _, reply = raw_request(a2i, "POST", "/", nested, headers)
    assert status in (200, 400), reply


@pytest.mark.parametrize("query", [
    "FlowDefinitionArn=%FF%FE", "FlowDefinitionArn=arn&MaxResults=1e5", "MaxResults=-3", "SortOrder=%00",
    "FlowDefinitionArn=arn:aws:sagemaker:us-east-1:123456789012:flow-definition/x&NextToken=" + "A" * 9000,
    "FlowDefinitionArn=arn:aws:sagemaker:us-east-1:123456789012:flow-definition/x&NextToken=e30.e30",
    "FlowDefinitionArn=arn:aws:sagemaker:us-east-1:123456789012:flow-definition/x&CreationTimeBefore=nan",
])
def test_list_with_malformed_query_strings_is_4xx(a2i, query):
    status, headers, reply = raw_request(a2i, "GET", f"/human-loops?{query}")
    assert 400 <= status < 500, reply
    assert reply["Message"]


@pytest.mark.parametrize("path", ["/_local/human-loops/x/complete", "/_local/human-loops/x/fail", "/_local/config",
                                  "/_local/clock"])
def test_control_api_with_bad_bodies_is_4xx(a2i, path):
    for body in [b"{", b"[]", b"null", json.dumps({"answerContent": None}).encode(),
                 json.dumps({"advance_seconds": "soon"}).encode(), json.dumps({"FailureCode": 1,
                                                                               "FailureReason": []}).encode()]:
        status, _, reply = raw_request(a2i, "POST", path, body)
        assert 400 <= status < 500, (path, body, reply)
        assert reply["message"]
