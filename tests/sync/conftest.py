"""Helpers of the sync tests (the world itself is tests/conftest.py's `aws`)."""


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
