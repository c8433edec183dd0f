"""DeleteHumanLoop: only finished loops; afterwards 404, unlisted, name free."""

import pytest

from .conftest import error_of, start


@pytest.mark.parametrize("finish", ["complete", "fail", "stop"])
def test_deleted_loop_is_gone_unlisted_and_its_name_free(a2i, runtime, flow_arn, finish):
    a2i.configure(stop_delay_seconds=0)
    start(runtime, flow_arn, "short-lived", {"v": 1})
    start(runtime, flow_arn, "keeper")
    {"complete": lambda: a2i.complete("short-lived", answer={}),
     "fail": lambda: a2i.fail("short-lived", "Expired", "too late"),
     "stop": lambda: runtime.stop_human_loop(HumanLoopName="short-lived")}[finish]()
    assert runtime.delete_human_loop(HumanLoopName="short-lived")["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.describe_human_loop(HumanLoopName="short-lived")
    names = [s["HumanLoopName"] for s in runtime.list_human_loops(FlowDefinitionArn=flow_arn)["HumanLoopSummaries"]]
    assert names == ["keeper"]
    start(runtime, flow_arn, "short-lived", {"v": 2})  # different input: no conflict any more
    assert runtime.describe_human_loop(HumanLoopName="short-lived")["HumanLoopStatus"] == "InProgress"


@pytest.mark.parametrize("state", ["InProgress", "Stopping"])
def test_deleting_an_active_loop_is_a_validation_error(a2i, runtime, flow_arn, state):
    a2i.configure(stop_delay_seconds=30)
    start(runtime, flow_arn, "busy")
    if state == "Stopping":
        runtime.stop_human_loop(HumanLoopName="busy")
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.delete_human_loop(HumanLoopName="busy")
    code, status, message = error_of(excinfo)
    assert status == 400 and state in message
    assert runtime.describe_human_loop(HumanLoopName="busy")["HumanLoopStatus"] == state


def test_deleting_an_unknown_loop_is_a_404(runtime):
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as excinfo:
        runtime.delete_human_loop(HumanLoopName="ghost")
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)


def test_deleting_twice_is_a_404_the_second_time(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "once")
    a2i.complete("once", answer={})
    runtime.delete_human_loop(HumanLoopName="once")
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.delete_human_loop(HumanLoopName="once")
