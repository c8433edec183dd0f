"""EventBridge status-change events delivered to a real local webhook (an http.server thread)."""

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from a2i_local.testing import a2i_local_server

ISO_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Webhook:
    """A real HTTP endpoint that records JSON bodies; it can answer 500 to the first N posts."""

    def __init__(self, fail_first: int = 0, port: int = 0):
        self.events: list[dict] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.lock = threading.Lock()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with webhook.lock:
                    webhook.attempts += 1
                    failing = webhook.attempts <= webhook.fail_first
                    if not failing:
                        webhook.events.append(
                            {"content_type": self.headers["Content-Type"], "path": self.path, **json.loads(body)}
                        )
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"webhook got {len(self.events)} event(s), expected {count}")

    def event_for(self, name: str) -> dict:
        matching = [e for e in self.events if e["detail"]["humanLoopName"] == name]
        assert matching, f"no event for {name}"
        return matching[0]


@pytest.fixture
def webhook():
    with Webhook() as hook:
        yield hook


@pytest.fixture
def server_with(a2i_server):
    """Start a separate A2I Local with a webhook (event_webhook is fixed at start), sharing the session's S3."""

    def start(url, **overrides):
        return a2i_local_server(s3_endpoint=a2i_server.s3_url, event_webhook=url, stop_delay_seconds=0.2, **overrides)

    return start


def start_loop(runtime, flow_arn, name):
    runtime.start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=flow_arn, HumanLoopInput={"InputContent": json.dumps({"text": name})}
    )
    return runtime.describe_human_loop(HumanLoopName=name)


def assert_event_shape(event, described, status, a2i):
    assert set(event) - {"content_type", "path"} == {
        "version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"
    }
    assert event["content_type"] == "application/json"
    assert event["path"] == "/events"
    assert event["version"] == "0"
    assert UUID.match(event["id"])
    assert event["detail-type"] == "SageMaker A2I HumanLoop Status Change"
    assert event["source"] == "aws.sagemaker"
    assert event["account"] == a2i.account_id == "123456789012"
    assert event["region"] == a2i.region
    assert ISO_SECONDS.match(event["time"])
    assert event["resources"] == [described["HumanLoopArn"]]
    detail = event["detail"]
    assert set(detail) == {
        "creationTime", "failureCode", "failureReason", "flowDefinitionArn", "humanLoopArn",
        "humanLoopName", "humanLoopOutput", "humanLoopStatus",
    }
    assert ISO_MILLIS.match(detail["creationTime"])
    expected_creation = described["CreationTime"]
    assert detail["creationTime"] == expected_creation.strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{expected_creation.microsecond // 1000:03d}Z"
    )
    assert detail["flowDefinitionArn"] == described["FlowDefinitionArn"]
    assert detail["humanLoopArn"] == described["HumanLoopArn"]
    assert detail["humanLoopName"] == described["HumanLoopName"]
    assert detail["humanLoopOutput"] == {"outputS3Uri": described["HumanLoopOutput"]["OutputS3Uri"]}
    assert detail["humanLoopStatus"] == status


def test_completed_failed_and_stopped_loops_each_post_one_event(server_with, webhook):
    with server_with(webhook.url) as a2i:
        flow_arn = a2i.create_flow_definition("events-flow")
        runtime = a2i.client("sagemaker-a2i-runtime")
        done = start_loop(runtime, flow_arn, "event-done")
        failed = start_loop(runtime, flow_arn, "event-failed")
        stopped = start_loop(runtime, flow_arn, "event-stopped")
        start_loop(runtime, flow_arn, "event-still-open")

        a2i.complete("event-done", answer={"label": "cat"})
        a2i.fail("event-failed", "InternalError", "The worker tool crashed.")
        runtime.stop_human_loop(HumanLoopName="event-stopped")

        events = webhook.wait_for(3)
        time.sleep(0.5)  # an extra (wrong) event for the open loop would arrive by now

    assert sorted(e["detail"]["humanLoopName"] for e in webhook.events) == [
        "event-done", "event-failed", "event-stopped"
    ]
    completed = webhook.event_for("event-done")
    assert_event_shape(completed, done, "Completed", a2i)
    # Explicit nulls, not missing keys, when the loop did not fail (A2I's documented example).
    assert completed["detail"]["failureCode"] is None
    assert completed["detail"]["failureReason"] is None

    failure = webhook.event_for("event-failed")
    assert_event_shape(failure, failed, "Failed", a2i)
    assert failure["detail"]["failureCode"] == "InternalError"
    assert failure["detail"]["failureReason"] == "The worker tool crashed."

    stop = webhook.event_for("event-stopped")
    assert_event_shape(stop, stopped, "Stopped", a2i)
    assert stop["detail"]["failureCode"] is None
    assert len({e["id"] for e in events}) == 3


def test_a_webhook_failing_twice_still_receives_the_event(server_with):
    with Webhook(fail_first=2) as hook, server_with(hook.url) as a2i:
        flow_arn = a2i.create_flow_definition("events-retry-flow")
        runtime = a2i.client("sagemaker-a2i-runtime")
        described = start_loop(runtime, flow_arn, "event-retried")
        a2i.complete("event-retried", answer={"label": "dog"})
        (event,) = hook.wait_for(1)
        assert hook.attempts == 3
        assert_event_shape(event, described, "Completed", a2i)


def test_a_webhook_that_is_down_at_first_still_receives_the_event(server_with):
    # Connection refused is retried like a non-2xx answer: the webhook comes up late on its port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with server_with(f"http://127.0.0.1:{port}/events") as a2i:
        flow_arn = a2i.create_flow_definition("events-late-flow")
        runtime = a2i.client("sagemaker-a2i-runtime")
        start_loop(runtime, flow_arn, "event-late")
        a2i.complete("event-late", answer={"label": "dog"})
        time.sleep(0.5)  # the first attempts hit a closed port
        with Webhook(port=port) as late:
            (event,) = late.wait_for(1)
    assert event["detail"]["humanLoopName"] == "event-late"


def test_a_slow_webhook_does_not_slow_the_api(server_with):
    release = threading.Event()
    received = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            release.wait(5)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with server_with(f"http://127.0.0.1:{server.server_port}/") as a2i:
            flow_arn = a2i.create_flow_definition("events-slow-flow")
            runtime = a2i.client("sagemaker-a2i-runtime")
            for n in range(3):
                start_loop(runtime, flow_arn, f"slow-{n}")
            started = time.perf_counter()
            for n in range(3):
                a2i.complete(f"slow-{n}", answer={"label": "cat"})
            assert time.perf_counter() - started < 3.0  # the webhook holds each POST for 5 s
            deadline = time.monotonic() + 5
            while not received and time.monotonic() < deadline:
                time.sleep(0.02)
            assert received and received[0]["detail"]["humanLoopName"] == "slow-0"
            release.set()
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_an_expired_loop_posts_a_failed_event_with_code_expired(server_with, webhook):
    with server_with(webhook.url) as a2i:
        flow_arn = a2i.create_flow_definition("events-expiry-flow", task_availability_lifetime_seconds=60)
        runtime = a2i.client("sagemaker-a2i-runtime")
        described = start_loop(runtime, flow_arn, "event-expired")
        a2i.advance_clock(61)  # the store's clock: the lifetime passes without a reviewer
        (event,) = webhook.wait_for(1)
    assert_event_shape(event, described, "Failed", a2i)
    assert event["detail"]["failureCode"] == "Expired"
    assert event["detail"]["failureReason"]


def test_a_webhook_that_is_down_gets_one_warning_per_interval_not_one_per_event(caplog):
    """Under `make run` the workforce's first events find the web server not yet listening:
    a warning line per event buried the start-up banner. One per destination every
    WARN_EVERY seconds now, the retries going on regardless."""
    import logging

    from a2i_local.config import Options
    from a2i_local.events import EventSender

    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = Options(event_webhook=f"http://127.0.0.1:{port}/events/")
    sender = EventSender(options, max_attempts=1).start()
    with caplog.at_level(logging.WARNING, logger="a2i_local.events"):
        for i in range(20):
            sender({"HumanLoopName": f"loop-{i}", "HumanLoopStatus": "Completed", "CreationTime": "2026-12-02T10:00:00Z",
                    "HumanLoopArn": f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/loop-{i}",
                    "FlowDefinitionArn": "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/fd"})
        assert sender.wait_idle(timeout=30)
        sender.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert sender.dropped == 20  # every event was tried (and, with max_attempts=1, dropped and logged as such)
