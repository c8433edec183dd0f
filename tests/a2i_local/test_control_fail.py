"""POST /_local/human-loops/{name}/fail: Failed with a FailureCode from the enum."""

import pytest

from a2i_local.testing import ControlAPIError

from .conftest import raw_request, start


@pytest.mark.parametrize("code", ["ValidationError", "Expired", "InternalError"])
def test_fail_sets_status_code_and_reason(a2i, runtime, flow_arn, code):
    start(runtime, flow_arn, "to-fail")
    reply = a2i.fail("to-fail", code, "Because the test said so.")
    assert reply["HumanLoopStatus"] == "Failed"
    loop = runtime.describe_human_loop(HumanLoopName="to-fail")
    assert (loop["HumanLoopStatus"], loop["FailureCode"], loop["FailureReason"]) == (
        "Failed", code, "Because the test said so.")


def test_unknown_failure_code_is_400_and_changes_nothing(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "still-fine")
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.fail("still-fine", "Boredom", "no")
    assert excinfo.value.status == 400
    assert "ValidationError, Expired, InternalError" in excinfo.value.body["message"]
    assert runtime.describe_human_loop(HumanLoopName="still-fine")["HumanLoopStatus"] == "InProgress"


def test_missing_fields_are_400(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "half-body")
    status, _, body = raw_request(a2i, "POST", "/_local/human-loops/half-body/fail", {"FailureCode": "Expired"})
    assert status == 400 and "FailureReason" in body["message"]


def test_failing_an_unknown_loop_is_404(a2i):
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.fail("nobody")
    assert excinfo.value.status == 404


def test_failing_a_completed_loop_is_409(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "finished")
    a2i.complete("finished", answer={})
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.fail("finished")
    assert excinfo.value.status == 409
