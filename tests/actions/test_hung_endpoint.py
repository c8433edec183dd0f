"""An A2I endpoint that accepts connections and never answers: the web request still returns
within the interactive limits, the loop is recorded "unknown" (not "not attempted"), and a
later sync settles what really happened.

Two real sockets stand in for a hung A2I: a black hole (accepts, reads, never forwards,
never answers) and a one-way proxy (forwards the request to A2I Local, which carries it
out, but never returns the answer), the case where A2I did receive the stop.
"""

import socket
import threading
import time

import pytest
from django.test import Client

from loops import a2i as a2i_api
from loops.models import HumanLoop, LoopAction, LoopActionBatch
from tests.conftest import a2i_status, loops_named, sync

pytestmark = pytest.mark.django_db

INTERACTIVE_TIMEOUT = 1
INTERACTIVE_ATTEMPTS = 2


class SilentEndpoint:
    """A TCP server on port 0 that accepts every connection and never sends a byte back.

    With `forward_to=(host, port)`, each request read is first sent on to that server
    (whose answer is dropped): the request is carried out, the client never learns it.
    """

    def __init__(self, forward_to: tuple[str, int] | None = None):
        self.forward_to = forward_to
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.requests: list[bytes] = []
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(0.5)
        buffer = b""
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buffer += data
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                continue
            length = next(
                (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0
            )
            if len(rest) < length:
                continue
            request, buffer = head + sep + rest[:length], rest[length:]
            self.requests.append(request)
            if self.forward_to:
                with socket.create_connection(self.forward_to, timeout=5) as upstream:
                    upstream.sendall(request)
                    upstream.recv(65536)  # A2I Local's answer, never passed on

    def close(self):
        self._stop.set()
        self.server.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def interactive_limits(settings):
    settings.A2I_INTERACTIVE_TIMEOUT = INTERACTIVE_TIMEOUT
    settings.A2I_INTERACTIVE_MAX_ATTEMPTS = INTERACTIVE_ATTEMPTS
    settings.A2I_ACTION_SETTLE_MARGIN_SECONDS = 0
    # The interactive limits: every attempt may wait its read timeout, plus botocore's backoff.
    return INTERACTIVE_ATTEMPTS * INTERACTIVE_TIMEOUT + 2.0


def point_runtime_at(monkeypatch, url):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", url)
    a2i_api.reset_clients()


def execute_stop(client, loops, reason="hung endpoint"):
    started = time.monotonic()
    response = client.post("/actions/execute/", {"action": "stop", "loop": [loop.pk for loop in loops], "reason": reason}, follow=True)
    return response, time.monotonic() - started


@pytest.fixture
def operator_client(operator):
    client = Client()
    client.force_login(operator)
    return client


def test_a_stop_against_a_silent_endpoint_returns_in_time_and_is_recorded_unknown_then_settled_by_a_sync(
    aws, a2i_world, operator_client, monkeypatch, interactive_limits
):
    first, second = loops_named(a2i_world["in_progress"][:2])
    silent = SilentEndpoint()
    point_runtime_at(monkeypatch, silent.url)
    try:
        response, elapsed = execute_stop(operator_client, [first, second])
    finally:
        silent.close()

    assert elapsed < interactive_limits, f"the request took {elapsed:.1f} s"
    assert silent.requests, "the stop was sent"
    batch = LoopActionBatch.objects.get()
    assert batch.state == "done"
    rows = {row.loop_id: row for row in batch.actions.all()}
    # The loop whose stop went out without an answer: unknown, never "not attempted".
    assert rows[first.pk].outcome == "unknown"
    assert rows[first.pk].detail.startswith("unknown: A2I may have received it (no answer from A2I")
    # The next one was never sent: not attempted, with the reason.
    assert rows[second.pk].outcome == "failed"
    assert rows[second.pk].detail.startswith("not attempted: A2I stopped answering")
    html = response.content.decode()
    assert '<li class="error">' in html and "1 unknown: A2I may have received it" in html
    assert 'class="summary error"' in html

    # A2I never saw the stop: the next sync lists the loop InProgress and settles it so.
    point_runtime_at(monkeypatch, aws.environ()["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"])
    sync(a2i_world["fd"])
    first.refresh_from_db()
    assert first.status == "InProgress" == a2i_status(aws, first.name)
    row = LoopAction.objects.get(pk=rows[first.pk].pk)
    assert row.outcome == "failed"
    assert row.detail.startswith("A2I did not receive the stop: still InProgress (incremental sync at") or row.detail.startswith(
        "A2I did not receive the stop: still InProgress (full sync at"
    )
    batch.refresh_from_db()
    assert "unknown" not in batch.summary


def test_a_stop_that_a2i_carried_out_without_answering_is_settled_as_succeeded_by_the_next_sync(
    aws, a2i_world, operator_client, monkeypatch, interactive_limits
):
    (loop,) = loops_named(a2i_world["in_progress"][:1])
    a2i_url = aws.environ()["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"]
    host, port = a2i_url.removeprefix("http://").split(":")
    one_way = SilentEndpoint(forward_to=(host, int(port)))
    point_runtime_at(monkeypatch, one_way.url)
    try:
        response, elapsed = execute_stop(operator_client, [loop])
    finally:
        one_way.close()

    assert elapsed < interactive_limits
    row = LoopAction.objects.get()
    assert row.outcome == "unknown"
    loop.refresh_from_db()
    assert loop.status == "InProgress"  # nothing is assumed locally
    assert a2i_status(aws, loop.name) in ("Stopping", "Stopped")  # but A2I did it

    point_runtime_at(monkeypatch, a2i_url)
    sync(a2i_world["fd"])
    loop.refresh_from_db()
    row.refresh_from_db()
    assert loop.status in ("Stopping", "Stopped")
    assert row.outcome == "succeeded" and row.detail.startswith("A2I received the stop")
    assert LoopActionBatch.objects.get().summary == "1 stopped"


def test_refresh_from_a2i_settles_an_unknown_stop(aws, a2i_world, operator_client, monkeypatch, interactive_limits):
    (loop,) = loops_named(a2i_world["in_progress"][:1])
    a2i_url = aws.environ()["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"]
    host, port = a2i_url.removeprefix("http://").split(":")
    one_way = SilentEndpoint(forward_to=(host, int(port)))
    point_runtime_at(monkeypatch, one_way.url)
    try:
        execute_stop(operator_client, [loop])
    finally:
        one_way.close()
    point_runtime_at(monkeypatch, a2i_url)

    operator_client.post(f"/loops/{loop.pk}/refresh/")

    row = LoopAction.objects.get()
    assert row.outcome == "succeeded" and "(describe at" in row.detail


def test_the_settle_task_describes_unknown_loops(aws, a2i_world, operator, monkeypatch, interactive_limits):
    from loops import tasks
    from loops.services import actions

    loops = loops_named(a2i_world["in_progress"][:1])
    silent = SilentEndpoint()
    point_runtime_at(monkeypatch, silent.url)
    batch = actions.create_batch(operator, "stop", "settle task", [loop.pk for loop in loops])
    try:
        assert actions.execute_batch_inline(batch.pk, budget_seconds=5)
    finally:
        silent.close()
    point_runtime_at(monkeypatch, aws.environ()["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"])

    assert tasks.settle_loop_actions(batch.pk) == 1

    row = LoopAction.objects.get()
    assert row.outcome == "failed" and "(describe at" in row.detail


def test_an_unreachable_a2i_is_reported_as_an_error_not_a_success(aws, a2i_world, operator_client, monkeypatch):
    loops = loops_named(a2i_world["in_progress"][:2])
    closed = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there: connection refused
    point_runtime_at(monkeypatch, url)

    response, _ = execute_stop(operator_client, loops)

    html = response.content.decode()
    assert '<li class="error">2 failed: not attempted: AWS endpoint unreachable' in html
    assert '<li class="success">' not in html
    assert {row.outcome for row in LoopAction.objects.all()} == {"failed"}


def test_a_partly_failed_batch_is_a_warning(aws, a2i_world, operator_client, monkeypatch, settings):
    settings.A2I_INTERACTIVE_MAX_ATTEMPTS = 1
    loops = loops_named(a2i_world["in_progress"])
    original = a2i_api.stop_human_loop
    calls = []

    def fail_after_first(region, name, **kwargs):
        # Only decides when A2I Local starts failing; the InternalServerException is real.
        calls.append(name)
        if len(calls) == 2:
            aws.configure(error_rate=1.0)
        return original(region, name, **kwargs)

    monkeypatch.setattr(a2i_api, "stop_human_loop", fail_after_first)
    try:
        response, _ = execute_stop(operator_client, loops)
    finally:
        aws.configure(error_rate=0.0)

    html = response.content.decode()
    assert '<li class="warning">1 stopped, 2 failed: StopHumanLoop: InternalServerException' in html
    assert 'class="summary warning"' in html


def test_a_slow_a2i_hands_the_rest_of_a_small_batch_to_a_worker_when_the_time_is_spent(
    aws, a2i_world, operator_client, settings, django_capture_on_commit_callbacks
):
    from loops import tasks

    settings.A2I_ACTION_INLINE_SECONDS = 1
    aws.configure(latency_ms=600)
    loops = loops_named(a2i_world["in_progress"])
    try:
        with django_capture_on_commit_callbacks() as callbacks:
            response, elapsed = execute_stop(operator_client, loops)
    finally:
        aws.configure(latency_ms=0)

    assert elapsed < 1 + 0.6 + 1.0  # the budget, plus the call under way when it ran out
    batch = LoopActionBatch.objects.get()
    outcomes = sorted(batch.actions.values_list("outcome", flat=True))
    assert "pending" in outcomes and "succeeded" in outcomes
    assert len(callbacks) == 1  # the worker's task, sent once the request's transaction commits
    assert "queued for a worker" in response.content.decode()

    tasks.execute_loop_action_batch(batch.pk)  # what the worker runs

    batch.refresh_from_db()
    assert batch.state == "done" and batch.summary == "3 stopped"
    assert set(HumanLoop.objects.filter(pk__in=[loop.pk for loop in loops]).values_list("status", flat=True)) == {"Stopping"}
