"""Errors go on the wire as AWS sends them: status, x-amzn-ErrorType, x-amzn-RequestId, {"Message"}."""

import json
import uuid

import pytest

from .conftest import raw_request, start


def assert_rest_json_error(status, headers, body, expected_status, code):
    assert status == expected_status
    assert headers["x-amzn-errortype"] == code
    uuid.UUID(headers["x-amzn-requestid"])
    assert headers["content-type"] == "application/json"
    assert isinstance(body["Message"], str) and body["Message"]


def test_validation_exception_is_400(a2i):
    assert_rest_json_error(*raw_request(a2i, "GET", "/human-loops/Bad_Name"), 400, "ValidationException")


def test_resource_not_found_is_404(a2i):
    assert_rest_json_error(*raw_request(a2i, "GET", "/human-loops/missing"), 404, "ResourceNotFoundException")


def test_conflict_is_409(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "dup", {"a": 1})
    body = {"HumanLoopName": "dup", "FlowDefinitionArn": flow_arn, "HumanLoopInput": {"InputContent": "{}"}}
    assert_rest_json_error(*raw_request(a2i, "POST", "/human-loops", body), 409, "ConflictException")


def test_service_quota_exceeded_is_402(a2i, runtime, flow_arn):
    a2i.configure(max_active_loops=0)
    body = {"HumanLoopName": "over", "FlowDefinitionArn": flow_arn, "HumanLoopInput": {"InputContent": "{}"}}
    assert_rest_json_error(*raw_request(a2i, "POST", "/human-loops", body), 402, "ServiceQuotaExceededException")


def test_success_carries_a_request_id_and_stop_and_delete_answer_an_empty_object(a2i, runtime, flow_arn):
    a2i.configure(stop_delay_seconds=0)
    start(runtime, flow_arn, "plain")
    status, headers, body = raw_request(a2i, "POST", "/human-loops/stop", {"HumanLoopName": "plain"})
    assert (status, body) == (200, {})
    uuid.UUID(headers["x-amzn-requestid"])
    status, _, body = raw_request(a2i, "DELETE", "/human-loops/plain")
    assert (status, body) == (200, {})


def test_malformed_json_body_is_a_400_serialization_exception(a2i):
    assert_rest_json_error(*raw_request(a2i, "POST", "/human-loops", b"{not json"), 400, "SerializationException")


def test_missing_required_members_are_named(a2i):
    status, headers, body = raw_request(a2i, "POST", "/human-loops", {})
    assert_rest_json_error(status, headers, body, 400, "ValidationException")
    assert body["Message"].startswith("3 validation errors detected:")
    assert "Value null at 'humanLoopInput' failed to satisfy constraint: Member must not be null" in body["Message"]


@pytest.mark.parametrize(("method", "path"), [("GET", "/nowhere"), ("PUT", "/human-loops"),
                                              ("GET", "/human-loops/a/b"), ("POST", "/human-loops/other")])
def test_unknown_route_is_a_404_with_an_aws_style_error(a2i, method, path):
    assert_rest_json_error(*raw_request(a2i, method, path), 404, "UnknownOperationException")


def test_url_encoded_names_are_decoded(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "encoded-name")
    status, _, body = raw_request(a2i, "GET", "/human-loops/encoded%2Dname")
    assert status == 200 and body["HumanLoopName"] == "encoded-name"


def test_keep_alive_connection_serves_many_requests(a2i, runtime, flow_arn):
    import http.client

    host, port = a2i.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    for _ in range(20):
        conn.request("GET", "/human-loops/missing")
        response = conn.getresponse()
        assert response.status == 404
        assert json.loads(response.read())["Message"]
    conn.close()
