"""POST /_local/human-loops/{name}/complete: Completed, output.json in S3, and its errors."""

import json
from urllib.parse import urlparse

import pytest

from a2i_local.testing import ControlAPIError, a2i_local_server

from .conftest import raw_request, start


def read_output(a2i, runtime, name):
    uri = urlparse(runtime.describe_human_loop(HumanLoopName=name)["HumanLoopOutput"]["OutputS3Uri"])
    s3 = a2i.client("s3")
    return json.loads(s3.get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read())


def test_complete_marks_the_loop_completed_and_writes_output_json(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "to-complete", {"image": "s3://in/cat.jpg", "score": 0.4})
    reply = a2i.complete("to-complete", answer={"label": "cat"}, worker_id="worker-7", time_spent_seconds=12.5)
    assert reply["HumanLoopStatus"] == "Completed"
    assert runtime.describe_human_loop(HumanLoopName="to-complete")["HumanLoopStatus"] == "Completed"
    output = read_output(a2i, runtime, "to-complete")
    assert output["flowDefinitionArn"] == flow_arn
    assert output["humanLoopName"] == "to-complete"
    assert output["inputContent"] == {"image": "s3://in/cat.jpg", "score": 0.4}
    [answer] = output["humanAnswers"]
    assert answer["answerContent"] == {"label": "cat"}
    assert answer["workerId"] == "worker-7"
    assert answer["timeSpentInSeconds"] == 12.5
    assert answer["submissionTime"].endswith("Z") and len(answer["submissionTime"]) == 24
    assert answer["acceptanceTime"] <= answer["submissionTime"]


def test_a_body_without_answer_content_is_the_answer_itself_and_worker_id_may_be_a_query_parameter(
        a2i, runtime, flow_arn):
    start(runtime, flow_arn, "bare-body")
    status, _, body = raw_request(a2i, "POST", "/_local/human-loops/bare-body/complete?workerId=w-q",
                                  {"label": "dog", "boxes": [1, 2]})
    assert status == 200, body
    [answer] = read_output(a2i, runtime, "bare-body")["humanAnswers"]
    assert answer["answerContent"] == {"label": "dog", "boxes": [1, 2]}
    assert answer["workerId"] == "w-q"


def test_completing_an_unknown_loop_is_404(a2i):
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.complete("nobody", answer={})
    assert excinfo.value.status == 404
    assert "nobody" in excinfo.value.body["message"]


@pytest.mark.parametrize("finish", ["complete", "fail", "stop"])
def test_completing_a_loop_that_is_not_in_progress_is_409(a2i, runtime, flow_arn, finish):
    a2i.configure(stop_delay_seconds=30)
    start(runtime, flow_arn, "done-already")
    if finish == "complete":
        a2i.complete("done-already", answer={})
    elif finish == "fail":
        a2i.fail("done-already")
    else:
        runtime.stop_human_loop(HumanLoopName="done-already")
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.complete("done-already", answer={})
    assert excinfo.value.status == 409
    assert "InProgress" in excinfo.value.body["message"]


def test_an_answer_that_is_not_an_object_is_400(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "odd-answer")
    status, _, body = raw_request(a2i, "POST", "/_local/human-loops/odd-answer/complete", {"answerContent": [1]})
    assert status == 400 and "answerContent" in body["message"]
    status, _, body = raw_request(a2i, "POST", "/_local/human-loops/odd-answer/complete", b"{oops")
    assert status == 400
    assert runtime.describe_human_loop(HumanLoopName="odd-answer")["HumanLoopStatus"] == "InProgress"


def test_when_s3_is_unreachable_complete_answers_502_and_the_loop_stays_in_progress():
    # A real failure, no mock: the S3 endpoint is a closed local port.
    with a2i_local_server(s3_endpoint="http://127.0.0.1:9") as a2i:
        arn = a2i.create_flow_definition("no-s3")
        runtime = a2i.client("sagemaker-a2i-runtime")
        start(runtime, arn, "stuck")
        with pytest.raises(ControlAPIError) as excinfo:
            a2i.complete("stuck", answer={"label": "cat"})
        assert excinfo.value.status == 502
        assert "output.json" in excinfo.value.body["message"]
        assert runtime.describe_human_loop(HumanLoopName="stuck")["HumanLoopStatus"] == "InProgress"


def test_reset_of_the_test_handle_also_empties_its_s3(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "leaves-output")
    a2i.complete("leaves-output", answer={})
    s3 = a2i.client("s3")
    assert s3.list_buckets()["Buckets"]
    a2i.reset()
    assert s3.list_buckets()["Buckets"] == []
