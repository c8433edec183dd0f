"""EventBridge status-change events POSTed to `--event-webhook`.

A2I emits "SageMaker A2I HumanLoop Status Change" to EventBridge when a loop reaches
Completed, Failed or Stopped (docs/a2i-local.md, behaviour notes §4). A2I Local POSTs
that exact event, as JSON, to a webhook URL instead. `EventSender` is a store listener: the store calls it after
commit, from whichever thread made the change, so calling it only builds the event and
queues it; one background thread delivers.

Delivery is at least once, as EventBridge's is: a connection error, a timeout or a
non-2xx answer is retried with exponential backoff (0.2 s doubling up to 30 s, at most
10 attempts by default), and a redelivered event keeps its `id` so a receiver can
deduplicate. Retries wait in a time-ordered heap, so one failing event does not hold
back events that are due now. An event still undelivered when its attempts run out, or
when the sender stops, is logged and dropped.
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

logger = logging.getLogger(__name__)

DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
SOURCE = "aws.sagemaker"
TERMINAL_STATUSES = ("Completed", "Failed", "Stopped")


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
    """Store listener that delivers status-change events to `options.event_webhook`.

    `sender(loop)` queues and returns at once (never raises for delivery problems).
    `.start()` starts the delivery thread; `.stop(timeout)` delivers what is due and
    stops, dropping (and logging) events still waiting for a retry.
    Options read live: `event_webhook` (at each POST), `region`, `account_id`.
    """

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
        self._heap: list[tuple[float, int, int, dict]] = []  # (due, seq, attempt, event)
        self._seq = itertools.count()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def __call__(self, loop: dict) -> None:
        if loop.get("HumanLoopStatus") not in TERMINAL_STATUSES:
            return
        event = build_event(loop, region=self.options.region, account_id=self.options.account_id)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic(), next(self._seq), 1, event))
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
                _due, _seq, attempt, event = heapq.heappop(self._heap)
                self._in_flight += 1
            ok = False
            try:
                ok = self._post(event)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    if ok:
                        self.delivered += 1
                    elif attempt >= self.max_attempts:
                        self.dropped += 1
                        logger.error("event %s for %s dropped after %d attempts", event["id"], event["resources"][0], attempt)
                    else:
                        backoff = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
                        heapq.heappush(self._heap, (time.monotonic() + backoff, next(self._seq), attempt + 1, event))
                    self._cond.notify_all()

    def _post(self, event: dict) -> bool:
        """POST one event; True on a 2xx answer. Never raises."""
        url = self.options.event_webhook
        if not url:
            return True  # webhook switched off meanwhile: nothing to deliver to
        body = json.dumps(event).encode()
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.request_timeout) as response:
                response.read()
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            logger.warning("event webhook %s answered %s for event %s", url, exc.code, event["id"])
        except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, bad URL
            logger.warning("event webhook %s unreachable for event %s: %s", url, event["id"], exc)
        return False
