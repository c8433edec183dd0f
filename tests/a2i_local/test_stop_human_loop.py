"""StopHumanLoop: InProgress -> Stopping -> Stopped, and the states it refuses."""

import time

import pytest

from .conftest import error_of, start


def test_stop_shows_stopping_then_stopped_after_the_delay(a2i, runtime, flow_arn):
    a2i.configure(stop_delay_seconds=0.4)
    start(runtime, flow_arn, "to-stop")
    assert runtime.stop_human_loop(HumanLoopName="to-stop")["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert runtime.describe_human_loop(HumanLoopName="to-stop")["HumanLoopStatus"] == "Stopping"
    deadline = time.monotonic() + 5
    while runtime.describe_human_loop(HumanLoopName="to-stop")["HumanLoopStatus"] == "Stopping":
        assert time.monotonic() < deadline, "never reached Stopped"
        time.sleep(0.05)
    assert runtime.describe_human_loop(HumanLoopName="to-stop")["HumanLoopStatus"] == "Stopped"


def test_stopping_becomes_stopped_when_the_clock_passes_the_delay(a2i, runtime, flow_arn):
    a2i.configure(stop_delay_seconds=60)
    start(runtime, flow_arn, "slow-stop")
    runtime.stop_human_loop(HumanLoopName="slow-stop")
    assert runtime.describe_human_loop(HumanLoopName="slow-stop")["HumanLoopStatus"] == "Stopping"
    a2i.advance_clock(61)
    assert runtime.describe_human_loop(HumanLoopName="slow-stop")["HumanLoopStatus"] == "Stopped"


def test_zero_delay_stops_at_once(a2i, runtime, flow_arn):
    a2i.configure(stop_delay_seconds=0)
    start(runtime, flow_arn, "quick-stop")
    runtime.stop_human_loop(HumanLoopName="quick-stop")
    assert runtime.describe_human_loop(HumanLoopName="quick-stop")["HumanLoopStatus"] == "Stopped"


def test_a_loop_named_stop_is_stopped_by_post(a2i, runtime, flow_arn):
    a2i.configure(stop_delay_seconds=0)
    start(runtime, flow_arn, "stop")
    runtime.stop_human_loop(HumanLoopName="stop")
    assert runtime.describe_human_loop(HumanLoopName="stop")["HumanLoopStatus"] == "Stopped"


@pytest.mark.parametrize("finish", ["complete", "fail", "stop"])
def test_stopping_a_loop_that_is_not_in_progress_is_a_validation_error(a2i, runtime, flow_arn, finish):
    a2i.configure(stop_delay_seconds=30)
    start(runtime, flow_arn, "finished")
    if finish == "complete":
        a2i.complete("finished", answer={"ok": 1})
    elif finish == "fail":
        a2i.fail("finished", "InternalError", "boom")
    else:
        runtime.stop_human_loop(HumanLoopName="finished")  # now Stopping
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.stop_human_loop(HumanLoopName="finished")
    code, status, message = error_of(excinfo)
    assert status == 400 and "only a human loop that is InProgress can be stopped" in message


def test_stopping_an_unknown_loop_is_a_404(runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as excinfo:
        runtime.stop_human_loop(HumanLoopName="ghost")
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)
