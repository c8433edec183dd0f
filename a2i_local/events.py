"""EventBridge status-change events, POSTed to `--event-webhook` and sent to `--event-queue-url`.

A2I emits "SageMaker A2I HumanLoop Status Change" to EventBridge when a loop reaches
Completed, Failed or Stopped (docs/a2i-local.md, behaviour notes §4). A2I Local delivers
that exact event, as JSON, the two ways EventBridge rules deliver it to teams: to a
webhook (an API destination: an HTTPS POST of the event, with the connection's
`Authorization` header when `--event-webhook-token` is set) and to an SQS queue (a rule
target: the message body is the event). `EventSender` is a store listener: the store
calls it after commit, from whichever thread made the change, so calling it only builds
the event and queues one delivery per destination; one background thread delivers.

Delivery is at least once, as EventBridge's is, and each destination on its own: a
connection error, a timeout or a non-2xx answer (an SQS error) is retried with
exponential backoff (0.2 s doubling up to 30 s, at most 10 attempts by default), and a
redelivered event keeps its `id` so a receiver can deduplicate. Retries wait in a
time-ordered heap, so one failing event does not hold back events that are due now. An
event still undelivered when its attempts run out, or when the sender stops, is logged
and dropped.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
SOURCE = "aws.sagemaker"
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")
# Seconds between two warnings about failed deliveries to one destination.
WARN_EVERY = 10.0


def format_event_time(moment: datetime) -> str:
    """EventBridge's `time`: UTC, seconds precision, `Z` (e.g. 2019-11-14T17:49:25Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_creation_time(value: datetime | str) -> str:
    """`detail.creationTime`: UTC with milliseconds and `Z` (e.g. 2019-11-14T17:37:36.740Z)."""
    if isinstance(value, str):
        return value  # already on the wire format
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def build_event(loop: dict[str, Any], *, region: str, account_id: str, now: datetime | None = None) -> dict:
    """Build the EventBridge event for one loop, as A2I documents it.

    `loop` has DescribeHumanLoop's keys (HumanLoopName, HumanLoopArn, HumanLoopStatus,
    CreationTime, FailureReason, FailureCode, FlowDefinitionArn, OutputS3Uri).
    `failureCode`/`failureReason` are explicit nulls when absent, as in AWS's example.
    """
    output_uri = loop.get("OutputS3Uri")
    if output_uri is None and isinstance(loop.get("HumanLoopOutput"), dict):
        output_uri = loop["HumanLoopOutput"].get("OutputS3Uri")
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPE,
        "source": SOURCE,
        "account": account_id,
        "time": format_event_time(now or datetime.now(UTC)),
        "region": region,
        "resources": [loop["HumanLoopArn"]],
        "detail": {
            "creationTime": format_creation_time(loop["CreationTime"]),
            "failureCode": loop.get("FailureCode"),
            "failureReason": loop.get("FailureReason"),
            "flowDefinitionArn": loop["FlowDefinitionArn"],
            "humanLoopArn": loop["HumanLoopArn"],
            "humanLoopName": loop["HumanLoopName"],
            "humanLoopOutput": {"outputS3Uri": output_uri},
            "humanLoopStatus": loop["HumanLoopStatus"],
        },
    }


class EventSender:
    """Store listener that delivers status-change events to `options.event_webhook` and
    `options.event_queue_url` (each one when set).

    `sender(loop)` queues and returns at once (never raises for delivery problems).
    `.start()` starts the delivery thread; `.stop(timeout)` delivers what is due and
    stops, dropping (and logging) events still waiting for a retry.
    Options read live: `event_webhook`, `event_webhook_token`, `event_queue_url` (at each
    delivery), `region`, `account_id`. `delivered` and `dropped` count deliveries: an
    event sent to both destinations counts twice.
    """

    WEBHOOK = "webhook"
    QUEUE = "queue"

    def __init__(
        self,
        options,
        *,
        initial_backoff: float = 0.2,
        max_backoff: float = 30.0,
        max_attempts: int = 10,
        request_timeout: float = 5.0,
    ) -> None:
        self.options = options
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_attempts = max_attempts
        self.request_timeout = request_timeout
        self.delivered = 0
        self.dropped = 0
        self._heap: list[tuple[float, int, int, str, dict]] = []  # (due, seq, attempt, destination, event)
        self._seq = itertools.count()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._sqs_clients: dict[tuple[str | None, str], Any] = {}
        # Failure warnings, one per destination per WARN_EVERY seconds (only the delivery
        # thread writes these): under `make run` the workforce's first events find the web
        # server not yet listening, and a line per event buried the start-up banner.
        self._warned_at: dict[str, float] = {}
        self._unwarned: dict[str, int] = {}

    def __call__(self, loop: dict) -> None:
        if loop.get("HumanLoopStatus") not in TERMINAL_STATUSES:
            return
        event = build_event(loop, region=self.options.region, account_id=self.options.account_id)
        destinations = [name for name, on in ((self.WEBHOOK, self.options.event_webhook),
                                              (self.QUEUE, self.options.event_queue_url)) if on]
        with self._cond:
            for destination in destinations:
                heapq.heappush(self._heap, (time.monotonic(), next(self._seq), 1, destination, event))
            self._cond.notify()

    def start(self) -> EventSender:
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="a2i-local-events", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            if self._heap:
                logger.warning("event sender stopped with %d undelivered event(s)", len(self._heap))
                self.dropped += len(self._heap)
                self._heap.clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no event is queued or being sent; True if that happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    # Stopping: deliver what is due now, but do not wait for retries.
                    if self._stopping:
                        return
                    wait = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(wait)
                _due, _seq, attempt, destination, event = heapq.heappop(self._heap)
                self._in_flight += 1
            ok = False
            try:
                ok = self._post(event) if destination == self.WEBHOOK else self._send_to_queue(event)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    if ok:
                        self.delivered += 1
                    elif attempt >= self.max_attempts:
                        self.dropped += 1
                        logger.error("event %s for %s dropped after %d attempts to the %s", event["id"],
                                     event["resources"][0], attempt, destination)
                    else:
                        backoff = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
                        heapq.heappush(self._heap, (time.monotonic() + backoff, next(self._seq), attempt + 1,
                                                    destination, event))
                    self._cond.notify_all()

    def _post(self, event: dict) -> bool:
        """POST one event to the webhook; True on a 2xx answer. Never raises."""
        url = self.options.event_webhook
        if not url:
            return True  # webhook switched off meanwhile: nothing to deliver to
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json"}
        if self.options.event_webhook_token:
            headers["Authorization"] = f"Bearer {self.options.event_webhook_token}"
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                response.read()
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            self._warn(url, "event webhook %s answered %s for event %s", url, exc.code, event["id"])
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, bad URL
            self._warn(url, "event webhook %s unreachable for event %s: %s", url, event["id"], exc)
        return False

    def _send_to_queue(self, event: dict) -> bool:
        """SendMessage of one event (the body is the event JSON, as an EventBridge rule
        target sends it); True when SQS accepted it. Never raises."""
        url = self.options.event_queue_url
        if not url:
            return True  # switched off meanwhile
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._sqs_client(url).send_message(QueueUrl=url, MessageBody=json.dumps(event))
            return True
        except (BotoCoreError, ClientError) as exc:
            self._warn(url, "event queue %s refused or unreachable for event %s: %s", url, event["id"], exc)
        return False

    def _warn(self, destination: str, message: str, *args) -> None:
        """Log a delivery failure, at most once per destination every WARN_EVERY seconds
        (with how many were not logged since); the retries go on regardless."""
        now = time.monotonic()
        if now - self._warned_at.get(destination, -WARN_EVERY) < WARN_EVERY:
            self._unwarned[destination] = self._unwarned.get(destination, 0) + 1
            return
        self._warned_at[destination] = now
        skipped = self._unwarned.pop(destination, 0)
        if skipped:
            message += f" ({skipped} more delivery failures to it in the last {WARN_EVERY:.0f} s, not logged)"
        logger.warning(message, *args)

    def _sqs_client(self, queue_url: str):
        """A boto3 SQS client for the queue's endpoint, created once (only the delivery thread calls this).

        An AWS queue URL (https://sqs.<region>.amazonaws.com/...) uses boto3's own endpoint,
        region from the URL and credentials from its chain; any other host (moto's SQS
        locally) is the endpoint itself, with dummy credentials as for the local S3.
        """
        host = urlparse(queue_url).hostname or ""
        parts = host.split(".")
        on_aws = host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
        region = parts[1] if on_aws and len(parts) >= 4 and parts[0] == "sqs" else self.options.region
        endpoint = None if on_aws else f"{urlparse(queue_url).scheme}://{urlparse(queue_url).netloc}"
        key = (endpoint, region)
        client = self._sqs_clients.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            kwargs = {}
            if endpoint:
                kwargs = {"endpoint_url": endpoint, "aws_access_key_id": "a2i-local", "aws_secret_access_key": "a2i-local"}
            client = boto3.client(
                "sqs", region_name=region,
                # One attempt per delivery: the sender's own backoff is the retry rule.
                config=Config(retries={"total_max_attempts": 1}, connect_timeout=self.request_timeout,
                              read_timeout=self.request_timeout),
                **kwargs,
            )
            self._sqs_clients[key] = client
        return client
