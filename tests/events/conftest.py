"""What the event tests share: events as A2I sends them, the endpoint over real HTTP (the
live server), real SQS queues on the session's moto server, and a snapshot of everything
an event could write."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, datetime

import pytest
import requests

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, ReceivedEvent
from tests.conftest import ACCOUNT

TOKEN = secrets.token_urlsafe(32)
ENDPOINT = "/events/eventbridge/"
FD_ARN = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/invoices"


def iso_seconds(moment: datetime) -> str:
    """EventBridge's `time`: UTC, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(moment: datetime) -> str:
    """`detail.creationTime`: UTC with milliseconds."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def make_event(
    name: str,
    status: str = "Completed",
    *,
    time: datetime,
    created: datetime,
    fd_arn: str = FD_ARN,
    failure_code: str | None = None,
    failure_reason: str | None = None,
    output_uri: str | None = "default",
    event_id: str | None = None,
) -> dict:
    """The EventBridge event A2I emits for one loop (docs/a2i-local.md, behaviour notes §4)."""
    prefix = fd_arn.split(":flow-definition/")[0]
    loop_arn = f"{prefix}:human-loop/{name}"
    fd_name = fd_arn.rpartition("/")[2]
    if output_uri == "default":
        output_uri = f"s3://out/{fd_name}/{created.astimezone(UTC):%Y/%m/%d/%H/%M/%S}/{name}/output.json"
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "SageMaker A2I HumanLoop Status Change",
        "source": "aws.sagemaker",
        "account": fd_arn.split(":")[4],
        "time": iso_seconds(time),
        "region": fd_arn.split(":")[3],
        "resources": [loop_arn],
        "detail": {
            "creationTime": iso_millis(created),
            "failureCode": failure_code,
            "failureReason": failure_reason,
            "flowDefinitionArn": fd_arn,
            "humanLoopArn": loop_arn,
            "humanLoopName": name,
            "humanLoopOutput": {"outputS3Uri": output_uri},
            "humanLoopStatus": status,
        },
    }


def for_loop(loop: HumanLoop, status: str = "Completed", *, time: datetime, **kwargs) -> dict:
    """An event for a stored loop (same flow definition and creation time)."""
    return make_event(loop.name, status, time=time, created=loop.creation_time, fd_arn=loop.flow_definition.arn, **kwargs)


def sns_envelope(event: dict) -> dict:
    """An SNS notification holding the event, as an SQS queue subscribed to a topic receives it."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": f"arn:aws:sns:us-east-1:{ACCOUNT}:a2i-events",
        "Message": json.dumps(event),
        "Timestamp": "2026-11-26T17:49:26.000Z",
        "SignatureVersion": "1",
    }


def snapshot() -> dict:
    """Every row an event could write or change, to compare before and after a rejected request."""
    return {
        "flow_definitions": sorted(FlowDefinition.objects.values_list("arn", "status", "deleted_upstream")),
        "loops": sorted(HumanLoop.objects.values_list(
            "arn", "status", "creation_time", "failure_code", "failure_reason", "output_s3_uri", "status_changed_at",
            "last_seen_at", "deleted_upstream",
        )),
        "history": sorted(HumanLoopStatusChange.objects.values_list("id", "from_status", "to_status", "observed_at", "source")),
        "events": sorted(ReceivedEvent.objects.values_list("event_id", "result")),
    }


@pytest.fixture
def events_on(settings):
    """The endpoint switched on with TOKEN."""
    settings.A2I_EVENTS_TOKEN = TOKEN
    return settings


class Endpoint:
    """POST /events/eventbridge/ over real HTTP (pytest-django's live server)."""

    def __init__(self, base_url: str):
        self.url = base_url + ENDPOINT
        self.http = requests.Session()

    def post(self, body, *, token: str | None = TOKEN, headers: dict | None = None) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        return self.http.post(self.url, data=data, headers=sent, timeout=30)


@pytest.fixture
def endpoint(live_server, events_on):
    endpoint = Endpoint(live_server.url)
    yield endpoint
    # A kept-alive connection holds a live-server thread, and that thread its database connection.
    endpoint.http.close()


class Queues:
    """Real SQS queues on the session's moto server, through a real boto3 client."""

    def __init__(self, url: str, region: str):
        import boto3

        self.client = boto3.client("sqs", endpoint_url=url, region_name=region,
                                   aws_access_key_id="testing", aws_secret_access_key="testing")

    def create(self, name: str, *, visibility: int = 30, max_receives: int = 3) -> tuple[str, str]:
        """A queue with a dead-letter queue (redrive after `max_receives` receives); returns both URLs."""
        dlq = self.client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = self.client.create_queue(QueueName=name, Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}),
        })["QueueUrl"]
        return queue, dlq

    def send(self, queue_url: str, body) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.client.send_message(QueueUrl=queue_url, MessageBody=text)["MessageId"]

    def send_many(self, queue_url: str, bodies: list) -> None:
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": b if isinstance(b, str) else json.dumps(b)}
                       for i, b in enumerate(bodies[start:start + 10])]
            assert not self.client.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")

    def drain(self, queue_url: str) -> list[str]:
        """Every message body now visible in the queue (received, and so hidden for the visibility timeout)."""
        bodies = []
        while True:
            messages = self.client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                                   WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return bodies
            bodies += [m["Body"] for m in messages]

    def count(self, queue_url: str) -> int:
        """Visible plus in-flight messages (SQS's approximate counts, exact on moto)."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def sqs(aws, monkeypatch) -> Queues:
    """SQS on the moto server that serves A2I Local's S3 (emptied before each test by `a2i`), with
    the dashboard's boto3 pointed at it through boto3's own AWS_ENDPOINT_URL_SQS."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", aws.s3_url)
    a2i_api.reset_clients()
    return Queues(aws.s3_url, aws.region)
