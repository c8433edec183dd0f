"""The action service against A2I Local over HTTP: outcomes, local state, audit rows, throttling."""

import pytest
from django.core.exceptions import PermissionDenied

from loops import a2i as a2i_api
from loops import tasks
from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, LoopAction, LoopActionBatch
from loops.services import actions
from tests.conftest import a2i_status, loops_named, start_loops, sync

pytestmark = pytest.mark.django_db

STOP, DELETE, STOP_AND_DELETE = "stop", "delete", "stop_and_delete"


def run(user, action, loops, reason="test reason"):
    """Record and execute a batch synchronously (whatever its size); returns it refreshed."""
    batch = actions.create_batch(user, action, reason, [loop.pk for loop in loops])
    actions.execute_batch(batch.pk)
    batch.refresh_from_db()
    return batch


def rows(batch) -> dict[str, LoopAction]:
    return {row.loop.name: row for row in batch.actions.select_related("loop")}


def test_stopping_an_in_progress_loop_sets_stopping_at_once_then_stopped_after_sync(aws, a2i_world, operator):
    name = a2i_world["in_progress"][0]
    (loop,) = loops_named([name])

    batch = run(operator, STOP, [loop], reason="wrong flow definition")

    loop.refresh_from_db()
    assert loop.status == "Stopping"
    assert HumanLoopStatusChange.objects.filter(loop=loop, from_status="InProgress", to_status="Stopping").exists()
    assert a2i_status(aws, name) in ("Stopping", "Stopped")
    row = rows(batch)[name]
    assert (row.outcome, row.user, row.reason, row.action) == ("succeeded", operator, "wrong flow definition", "stop")
    assert row.finished_at is not None
    assert batch.state == "done" and batch.summary == "1 stopped"

    _wait_for(lambda: a2i_status(aws, name) == "Stopped")
    sync(a2i_world["fd"])
    loop.refresh_from_db()
    assert loop.status == "Stopped"
    assert FlowDefinition.objects.get(pk=a2i_world["fd"].pk).stats["status_counts"].get("Stopped") == 1


def test_stopping_a_completed_loop_is_skipped_with_the_reason_and_a2i_is_untouched(aws, a2i_world, operator):
    name = a2i_world["completed"][0]
    (loop,) = loops_named([name])

    batch = run(operator, STOP, [loop])

    row = rows(batch)[name]
    assert row.outcome == "skipped"
    assert row.detail == "not InProgress; status is Completed"
    assert batch.summary == "1 skipped (not InProgress)"
    assert a2i_status(aws, name) == "Completed"
    loop.refresh_from_db()
    assert loop.status == "Completed"


def test_deleting_a_completed_loop_removes_it_from_a2i_and_keeps_it_locally_marked(aws, a2i_world, operator):
    name = a2i_world["completed"][0]
    (loop,) = loops_named([name])

    batch = run(operator, DELETE, [loop])

    client = aws.client("sagemaker-a2i-runtime")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_human_loop(HumanLoopName=name)
    loop.refresh_from_db()
    assert loop.deleted_upstream and loop.deleted_upstream_at is not None
    assert loop.status == "Completed"  # kept as history
    assert rows(batch)[name].outcome == "succeeded"
    assert batch.summary == "1 deleted"


def test_delete_skips_loops_that_are_not_finished(aws, a2i_world, operator):
    selection = loops_named(a2i_world["in_progress"][:1] + a2i_world["failed"] + a2i_world["completed"][:1])

    batch = run(operator, DELETE, selection)

    outcomes = {name: row.outcome for name, row in rows(batch).items()}
    assert outcomes == {a2i_world["in_progress"][0]: "skipped", a2i_world["failed"][0]: "succeeded", a2i_world["completed"][0]: "succeeded"}
    assert a2i_status(aws, a2i_world["in_progress"][0]) == "InProgress"
    assert batch.summary == "2 deleted, 1 skipped (not Completed, Failed or Stopped)"


def test_a_loop_that_finished_since_the_last_sync_is_skipped_and_its_status_learned(aws, a2i_world, operator):
    name = a2i_world["in_progress"][0]
    aws.complete(name, answer={"label": "dog"})  # A2I moves on; our copy still says InProgress
    (loop,) = loops_named([name])

    batch = run(operator, STOP, [loop])

    row = rows(batch)[name]
    assert (row.outcome, row.detail) == ("skipped", "not InProgress; A2I says Completed")
    loop.refresh_from_db()
    assert loop.status == "Completed"


def test_a_loop_deleted_in_a2i_behind_our_back_is_marked_and_reported(aws, a2i_world, operator):
    name = a2i_world["completed"][0]
    aws.client("sagemaker-a2i-runtime").delete_human_loop(HumanLoopName=name)
    (loop,) = loops_named([name])

    batch = run(operator, DELETE, [loop])

    assert (rows(batch)[name].outcome, rows(batch)[name].detail) == ("skipped", "already deleted in A2I")
    loop.refresh_from_db()
    assert loop.deleted_upstream


def test_stop_then_delete_stops_waits_until_stopped_and_deletes(aws, a2i_world, operator):
    aws.configure(stop_delay_seconds=0.5)
    names = a2i_world["in_progress"][:2] + a2i_world["completed"][:1]

    batch = run(operator, STOP_AND_DELETE, loops_named(names), reason="cost spike")

    assert {name: a2i_status(aws, name) for name in names} == dict.fromkeys(names, None)
    by_name = rows(batch)
    assert [by_name[n].outcome for n in names] == ["succeeded"] * 3
    assert by_name[names[0]].detail == "stopped, then deleted"
    assert by_name[names[2]].detail == "deleted; was Completed"
    for loop in loops_named(names):
        assert loop.deleted_upstream
    # The wait recorded what it saw: InProgress -> Stopping -> Stopped for the stopped loops.
    changes = list(HumanLoopStatusChange.objects.filter(loop__name=names[0]).values_list("to_status", flat=True))
    assert changes[-2:] == ["Stopping", "Stopped"]
    assert batch.summary == "3 deleted"


def test_stop_then_delete_reports_a_loop_that_does_not_stop_in_time(aws, a2i_world, operator, settings):
    settings.A2I_ACTION_STOP_WAIT_SECONDS = 0.3
    aws.configure(stop_delay_seconds=30)
    name = a2i_world["in_progress"][0]

    batch = run(operator, STOP_AND_DELETE, loops_named([name]))

    row = rows(batch)[name]
    assert row.outcome == "failed"
    assert row.detail.startswith("still Stopping after")
    assert a2i_status(aws, name) == "Stopping"  # stopped, not deleted: exactly what the detail says


def _wait_for(predicate, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class ThrottleMidway:
    """Wraps loops.a2i.stop_human_loop to switch A2I Local's throttle on after `after` calls.

    The wrapper only decides *when* the fault starts; every call still goes over
    HTTP to A2I Local, whose token bucket produces the real ThrottlingException.
    """

    def __init__(self, aws, after: int, tps: float):
        self.aws, self.after, self.tps, self.calls = aws, after, tps, 0
        self.original = a2i_api.stop_human_loop

    def __call__(self, region, name, **kwargs):
        self.calls += 1
        if self.calls == self.after:
            self.aws.configure(throttle_tps=self.tps)
        return self.original(region, name, **kwargs)


def _bulk_stop_world(aws, flow_definition, count=200):
    names = start_loops(aws, flow_definition, count, prefix="bulk")
    sync(flow_definition)
    return names


def test_throttling_midway_through_a_bulk_stop_of_200_is_absorbed_and_every_loop_stopped(
    aws, flow_definition, operator, settings, monkeypatch
):
    names = _bulk_stop_world(aws, flow_definition)
    # botocore retries once (fast test); the service's own backoff does the rest.
    settings.A2I_MAX_ATTEMPTS = 2
    settings.A2I_ACTION_THROTTLE_RETRIES = 12
    a2i_api.reset_clients()
    throttle = ThrottleMidway(aws, after=50, tps=20)
    monkeypatch.setattr(a2i_api, "stop_human_loop", throttle)
    counter = _count_throttled(aws)

    batch = run(operator, STOP, loops_named(names))
    aws.configure(throttle_tps=0)  # off again, so the checks below read A2I at full speed

    assert throttle.calls >= 200
    assert counter.throttled > 0, "the throttle never bit: the test proves nothing"
    by_name = rows(batch)
    assert len(by_name) == 200
    assert {row.outcome for row in by_name.values()} == {"succeeded"}
    assert {a2i_status(aws, name) for name in names} <= {"Stopping", "Stopped"}
    assert batch.summary == "200 stopped"


def test_when_retries_run_out_every_loop_is_still_stopped_or_reported(aws, flow_definition, operator, settings, monkeypatch):
    names = _bulk_stop_world(aws, flow_definition)
    settings.A2I_MAX_ATTEMPTS = 1  # one attempt: no botocore retry
    settings.A2I_ACTION_THROTTLE_RETRIES = 1
    a2i_api.reset_clients()
    monkeypatch.setattr(a2i_api, "stop_human_loop", ThrottleMidway(aws, after=50, tps=5))

    batch = run(operator, STOP, loops_named(names))
    aws.configure(throttle_tps=0)  # off again, so the checks below read A2I at full speed

    by_name = rows(batch)
    assert len(by_name) == 200 and batch.total == 200
    assert LoopAction.objects.filter(batch=batch, outcome="pending").count() == 0
    failed = {name for name, row in by_name.items() if row.outcome == "failed"}
    assert failed, "with one retry at 5 TPS some loops must fail"
    for name, row in by_name.items():
        status = a2i_status(aws, name)
        if row.outcome == "succeeded":
            assert status in ("Stopping", "Stopped"), name
        else:
            # Reported, with A2I's error, and really not stopped.
            assert row.outcome == "failed" and "ThrottlingException" in row.detail, (name, row.detail)
            assert status == "InProgress", name
            assert HumanLoop.objects.get(name=name).status == "InProgress"
    stopped = 200 - len(failed)
    assert batch.summary.startswith(f"{stopped} stopped, {len(failed)} failed: ")
    assert "ThrottlingException" in batch.summary


class _count_throttled:
    """Counts ThrottlingException answers seen by the service's runtime client (botocore event hook)."""

    def __init__(self, aws):
        self.throttled = 0
        client = a2i_api.runtime_client(aws.region)
        client.meta.events.register("needs-retry.sagemaker-a2i-runtime.StopHumanLoop", self._seen)

    def _seen(self, response=None, **kwargs):
        if response and response[1].get("Error", {}).get("Code") == "ThrottlingException":
            self.throttled += 1


def test_an_unreachable_a2i_fails_the_batch_quickly_and_reports_every_loop(a2i_world, operator, settings, monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", f"http://127.0.0.1:{port}")
    settings.A2I_MAX_ATTEMPTS = 1
    a2i_api.reset_clients()

    batch = run(operator, STOP, loops_named(a2i_world["in_progress"]))

    assert {row.outcome for row in rows(batch).values()} == {"failed"}
    assert all(row.detail.startswith("not attempted: ") and "unreachable" in row.detail for row in rows(batch).values())
    assert batch.summary.startswith("3 failed: not attempted: ") and "unreachable" in batch.summary
    for loop in loops_named(a2i_world["in_progress"]):
        assert loop.status == "InProgress"


def test_audit_rows_exist_for_every_attempt_including_failures(aws, a2i_world, operator, settings):
    settings.A2I_MAX_ATTEMPTS = 1
    settings.A2I_ACTION_THROTTLE_RETRIES = 0
    a2i_api.reset_clients()
    aws.configure(error_rate=1.0)  # every call answers InternalServerException
    selection = loops_named(a2i_world["in_progress"] + a2i_world["completed"])

    batch = run(operator, STOP, selection, reason="audit me")

    audit = list(LoopAction.objects.filter(batch=batch).select_related("loop", "user"))
    assert {row.loop.name for row in audit} == {loop.name for loop in selection}
    assert {(row.user, row.reason, row.action) for row in audit} == {(operator, "audit me", "stop")}
    failed = [row for row in audit if row.outcome == "failed"]
    assert {row.loop.name for row in failed} == set(a2i_world["in_progress"])
    assert all("InternalServerException" in row.detail for row in failed)
    assert {row.outcome for row in audit if row.loop.name in a2i_world["completed"]} == {"skipped"}
    assert all(row.finished_at for row in audit)


def test_create_batch_refuses_a_user_without_the_permission_and_an_empty_reason(a2i_world, viewer, operator):
    loops = loops_named(a2i_world["in_progress"])
    with pytest.raises(PermissionDenied):
        actions.create_batch(viewer, STOP, "because", [loop.pk for loop in loops])
    with pytest.raises(ValueError, match="reason"):
        actions.create_batch(operator, STOP, "   ", [loop.pk for loop in loops])
    with pytest.raises(ValueError, match="no loops"):
        actions.create_batch(operator, STOP, "because", [])
    assert LoopActionBatch.objects.count() == 0


def test_plan_counts_eligible_and_skipped_loops_with_reasons(a2i_world):
    plan = actions.plan_action(STOP, HumanLoop.objects.filter(flow_definition=a2i_world["fd"]))
    assert (plan.total, plan.eligible) == (6, 3)
    assert plan.skipped == {"not InProgress": 3}
    assert {p.loop.name for p in plan.loops if p.eligible} == set(a2i_world["in_progress"])

    plan = actions.plan_action(DELETE, HumanLoop.objects.filter(flow_definition=a2i_world["fd"]), sample=2)
    assert (plan.total, plan.eligible, plan.skipped) == (6, 3, {"not Completed, Failed or Stopped": 3})
    assert len(plan.loops) == 2 and plan.more == 4


def test_more_than_the_threshold_enqueues_a_task_and_leaves_the_batch_pending(
    aws, flow_definition, operator, settings, django_capture_on_commit_callbacks
):
    names = start_loops(aws, flow_definition, 21, prefix="many")
    sync(flow_definition)
    settings.A2I_BULK_ACTION_THRESHOLD = 20
    batch = actions.create_batch(operator, STOP, "bulk", [loop.pk for loop in loops_named(names)])

    with _broker_queue() as queue, django_capture_on_commit_callbacks(execute=True):
        assert tasks.dispatch_batch(batch) is True

    batch.refresh_from_db()
    assert batch.state == "pending" and batch.total == 21
    assert set(batch.actions.values_list("outcome", flat=True)) == {"pending"}
    assert queue.sent_for(batch.pk) == ["loops.tasks.execute_loop_action_batch"]
    assert {a2i_status(aws, name) for name in names} == {"InProgress"}  # nothing reached A2I in the request


def test_twenty_loops_run_in_the_request(aws, flow_definition, operator, settings):
    names = start_loops(aws, flow_definition, 20, prefix="few")
    sync(flow_definition)
    settings.A2I_BULK_ACTION_THRESHOLD = 20
    batch = actions.create_batch(operator, STOP, "few", [loop.pk for loop in loops_named(names)])

    assert tasks.dispatch_batch(batch) is False
    assert batch.state == "done" and batch.summary == "20 stopped"


class _broker_queue:
    """The real Redis broker queue: finds the messages this test sent, and removes them."""

    def __enter__(self):
        import redis
        from django.conf import settings

        self.redis = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        return self

    def __exit__(self, *exc):
        return False

    def sent_for(self, batch_id: int) -> list[str]:
        import json

        found = []
        for raw in self.redis.lrange("celery", 0, -1):
            message = json.loads(raw)
            headers = message.get("headers", {})
            if headers.get("task", "").startswith("loops.tasks.") and headers.get("argsrepr") == f"({batch_id},)":
                found.append(headers["task"])
                self.redis.lrem("celery", 1, raw)
        return found


def test_an_unexpected_error_on_one_loop_fails_that_loop_only(aws, a2i_world, operator, monkeypatch):
    # A mock, because no real part produces it: a bug (here in the local write after a
    # successful StopHumanLoop) must cost one loop's outcome, not the batch.
    from loops.services import loop_actions

    broken = a2i_world["in_progress"][1]
    real = loop_actions.set_loop_status

    def set_loop_status(loop, status, **kwargs):
        if loop.name == broken:
            raise RuntimeError("bug in the local write")
        return real(loop, status, **kwargs)

    monkeypatch.setattr(loop_actions, "set_loop_status", set_loop_status)

    batch = run(operator, STOP, loops_named(a2i_world["in_progress"]))

    by_name = rows(batch)
    assert by_name[broken].outcome == "failed"
    assert by_name[broken].detail.startswith("unexpected error: RuntimeError('bug in the local write')")
    assert {by_name[n].outcome for n in a2i_world["in_progress"] if n != broken} == {"succeeded"}
    assert batch.state == "done" and batch.summary.startswith("2 stopped, 1 failed: unexpected error")


def test_a_redelivered_task_resumes_only_the_pending_loops(aws, a2i_world, operator, monkeypatch):
    names = a2i_world["in_progress"]
    batch = actions.create_batch(operator, STOP, "resume", [loop.pk for loop in loops_named(names)])
    # A worker died after stopping the first loop and recording it.
    first = batch.actions.select_related("loop__flow_definition").get(loop__name=names[0])
    actions._finish(first, *actions.loop_actions.stop_loop(first.loop))
    LoopActionBatch.objects.filter(pk=batch.pk).update(state="running")
    calls = []
    real_stop = a2i_api.stop_human_loop
    monkeypatch.setattr(a2i_api, "stop_human_loop", lambda region, name, **kwargs: calls.append(name) or real_stop(region, name, **kwargs))

    summary = actions.execute_batch(batch.pk)  # the redelivered task

    assert calls == names[1:]  # the loop already done is not called again
    assert summary == "3 stopped"
    assert {a2i_status(aws, n) for n in names} <= {"Stopping", "Stopped"}
