"""Helpers shared by the A2I Local tests: a flow definition, loop starts and raw HTTP.

The server itself comes from the a2i_local.testing plugin (fixtures a2i, a2i_client, ...).
"""

import http.client
import json

import pytest
from botocore.config import Config

# botocore's max_attempts counts RETRIES (total_max_attempts = max_attempts + 1); this is one attempt.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture
def flow_arn(a2i):
    return a2i.create_flow_definition("reviews")


@pytest.fixture
def runtime(a2i):
    """A runtime client that never retries, so every error reaches the test as sent."""
    return a2i.client("sagemaker-a2i-runtime", config=NO_RETRIES)


def start(client, flow_arn, name, content=None, **extra):
    return client.start_human_loop(
        HumanLoopName=name,
        FlowDefinitionArn=flow_arn,
        HumanLoopInput={"InputContent": json.dumps(content if content is not None else {"item": name})},
        **extra,
    )["HumanLoopArn"]


def raw_request(a2i, method, path, body=None, headers=None):
    """One HTTP request without boto3: returns (status, lower-cased headers, parsed JSON body or None)."""
    host, port = a2i.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        response = conn.getresponse()
        payload = response.read()
        parsed = json.loads(payload) if payload else None
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


def error_of(excinfo):
    """(code, HTTP status, message) of a botocore ClientError."""
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]
