"""The sync tests' world: A2I Local over HTTP (session server, state reset per test),
boto3 pointed at it through its own standard environment variables, PostgreSQL.
"""

import uuid

import pytest

from loops import a2i as a2i_api
from loops.models import FlowDefinition
from loops.services.sync import discover_flow_definitions


@pytest.fixture
def aws(a2i, monkeypatch, settings):
    """A2I Local with boto3 configured exactly as in production: env vars, no code changes."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", a2i.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", a2i.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", a2i.s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", a2i.region)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.A2I_REGIONS = [a2i.region]
    # Loops that the sync marks deleted were created seconds ago; the margin does not matter here.
    settings.A2I_INCREMENTAL_MARGIN = 300
    a2i.configure(stop_delay_seconds=0)
    a2i_api.reset_clients()
    yield a2i
    a2i_api.reset_clients()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def flow_definition(aws, db) -> FlowDefinition:
    """One Active flow definition in A2I Local, discovered into the database."""
    arn = aws.create_flow_definition(unique("fd"))
    discover_flow_definitions([aws.region])
    return FlowDefinition.objects.get(arn=arn)


def start_loops(aws, fd: FlowDefinition, count: int, prefix: str = "loop") -> list[str]:
    """Start `count` loops through the real runtime API; returns their names."""
    client = aws.client("sagemaker-a2i-runtime")
    names = []
    for i in range(count):
        name = f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"
        client.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=fd.arn, HumanLoopInput={"InputContent": f'{{"n": {i}}}'}
        )
        names.append(name)
    return names


def list_a2i(aws, fd_arn: str) -> dict[str, dict]:
    """A2I's own listing of a flow definition, by loop name (an independent client, no sync code)."""
    paginator = aws.client("sagemaker-a2i-runtime").get_paginator("list_human_loops")
    loops = {}
    for page in paginator.paginate(FlowDefinitionArn=fd_arn, SortOrder="Ascending"):
        for summary in page["HumanLoopSummaries"]:
            loops[summary["HumanLoopName"]] = summary
    return loops


class CallCounter:
    """Counts the HTTP calls one boto3 client makes, by operation (botocore event hook)."""

    def __init__(self, client):
        self.calls: dict[str, int] = {}
        client.meta.events.register("before-send", self)

    def __call__(self, request=None, **kwargs):
        # before-send fires once per HTTP attempt, retries included.
        operation = kwargs.get("event_name", "").rsplit(".", 1)[-1]
        self.calls[operation] = self.calls.get(operation, 0) + 1

    def __getitem__(self, operation: str) -> int:
        return self.calls.get(operation, 0)
