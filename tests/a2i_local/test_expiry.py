"""Expiry: a loop not completed within TaskAvailabilityLifetimeInSeconds becomes Failed/Expired."""

import time

from .conftest import start


def test_loop_expires_when_its_lifetime_passes(a2i, runtime):
    arn = a2i.create_flow_definition("short-lived", task_availability_lifetime_seconds=3600)
    start(runtime, arn, "will-expire")
    a2i.advance_clock(3599)
    assert runtime.describe_human_loop(HumanLoopName="will-expire")["HumanLoopStatus"] == "InProgress"
    a2i.advance_clock(2)
    loop = runtime.describe_human_loop(HumanLoopName="will-expire")
    assert loop["HumanLoopStatus"] == "Failed"
    assert loop["FailureCode"] == "Expired"
    assert "TaskAvailabilityLifetimeInSeconds" in loop["FailureReason"]


def test_the_reaper_expires_loops_without_any_request(a2i, runtime):
    arn = a2i.create_flow_definition("one-second", task_availability_lifetime_seconds=1)
    start(runtime, arn, "idle")
    deadline = time.monotonic() + 5
    while a2i.store.describe_human_loop("idle")["HumanLoopStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the reaper never expired the loop"
        time.sleep(0.05)
    assert a2i.store.describe_human_loop("idle")["FailureCode"] == "Expired"


def test_completed_loops_do_not_expire(a2i, runtime):
    arn = a2i.create_flow_definition("finish-in-time", task_availability_lifetime_seconds=60)
    start(runtime, arn, "in-time")
    a2i.complete("in-time", answer={})
    a2i.advance_clock(120)
    assert runtime.describe_human_loop(HumanLoopName="in-time")["HumanLoopStatus"] == "Completed"


def test_a_stopping_loop_whose_lifetime_passes_ends_stopped_not_expired(a2i, runtime):
    a2i.configure(stop_delay_seconds=120)
    arn = a2i.create_flow_definition("stop-then-expire", task_availability_lifetime_seconds=60)
    start(runtime, arn, "stopping")
    runtime.stop_human_loop(HumanLoopName="stopping")
    a2i.advance_clock(200)
    loop = runtime.describe_human_loop(HumanLoopName="stopping")
    assert loop["HumanLoopStatus"] == "Stopped" and "FailureCode" not in loop


def test_expiry_notifies_store_listeners(a2i, runtime):
    seen = []
    a2i.store.subscribe(seen.append)
    try:
        arn = a2i.create_flow_definition("notify", task_availability_lifetime_seconds=10)
        start(runtime, arn, "notify-me")
        a2i.advance_clock(11)
        [loop] = [loop for loop in seen if loop["HumanLoopName"] == "notify-me"]
        assert (loop["HumanLoopStatus"], loop["FailureCode"]) == ("Failed", "Expired")
        assert loop["CreationTime"].tzinfo is not None
    finally:
        a2i.store.unsubscribe(seen.append)
