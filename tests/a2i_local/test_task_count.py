"""A2I Local honours TaskCount: the workforce completes a loop with answers from as many
distinct workers, each with their own times, some disagreeing; the control API completes a
loop with several answers; `seed --s3-endpoint` gives the newest Completed loops their output.json."""

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import datetime
from urllib.parse import urlparse

import pytest

from a2i_local.testing import ControlAPIError
from a2i_local.workforce import SPEED, WORKERS, make_answers

from .test_workforce import FAST, all_loops, start_loops, wait_until


def ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def read_output(a2i, runtime, name) -> dict:
    uri = urlparse(runtime.describe_human_loop(HumanLoopName=name)["HumanLoopOutput"]["OutputS3Uri"])
    return json.loads(a2i.client("s3").get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read())


@pytest.fixture
def server_with(a2i_server):
    from a2i_local.testing import a2i_local_server

    return lambda **overrides: a2i_local_server(s3_endpoint=a2i_server.s3_url, **{**FAST, "workforce_failure_rate": 0.0, **overrides})


def test_the_workforce_answers_with_task_count_distinct_workers_and_their_own_times(server_with):
    with server_with() as a2i:
        flow_arn = a2i.create_flow_definition("three-reviewers", task_count=3)
        runtime = a2i.client("sagemaker-a2i-runtime")
        start_loops(runtime, flow_arn, 8, "tc")
        loops = wait_until(lambda: (lambda ls: ls if all(s["HumanLoopStatus"] == "Completed" for s in ls) else None)(
            all_loops(runtime, flow_arn)))
        for summary in loops:
            output = read_output(a2i, runtime, summary["HumanLoopName"])
            created = summary["CreationTime"].timestamp() * 1000
            answers = output["humanAnswers"]
            assert len(answers) == 3
            assert len({a["workerId"] for a in answers}) == 3
            for answer in answers:
                assert answer["workerMetadata"]["identityData"]["sub"] == answer["workerId"]
                assert created - 1 <= ms(answer["acceptanceTime"]) <= ms(answer["submissionTime"])
                assert answer["timeSpentInSeconds"] >= 0
                assert ms(answer["submissionTime"]) - ms(answer["acceptanceTime"]) == pytest.approx(
                    answer["timeSpentInSeconds"] * 1000, abs=2)
            # The last submission is the completion; the others came earlier.
            assert ms(answers[-1]["submissionTime"]) == max(ms(a["submissionTime"]) for a in answers)


def test_single_reviewer_flow_definitions_keep_one_answer(server_with):
    with server_with() as a2i:
        flow_arn = a2i.create_flow_definition("one-reviewer")
        runtime = a2i.client("sagemaker-a2i-runtime")
        start_loops(runtime, flow_arn, 3, "one")
        wait_until(lambda: all(s["HumanLoopStatus"] == "Completed" for s in all_loops(runtime, flow_arn)))
        assert len(read_output(a2i, runtime, "one-0")["humanAnswers"]) == 1


def dissenting(answers) -> bool:
    return len({json.dumps(a.answer_content, sort_keys=True) for a in answers}) > 1


@pytest.mark.parametrize(("rate", "low", "high"), [(0.1, 0.07, 0.13), (0.0, 0.0, 0.0), (0.5, 0.45, 0.55), (1.0, 1.0, 1.0)])
def test_the_disagreement_share_is_configurable(rate, low, high):
    share = sum(
        dissenting(make_answers(seed, task_count=2, created_ms=0, completed_ms=600_000, disagreement_rate=rate))
        for seed in range(3000)
    ) / 3000
    assert low <= share <= high


def test_some_workers_are_busier_and_faster_than_others():
    counts, times = Counter(), {}
    for seed in range(6000):
        for answer in make_answers(seed, task_count=3, created_ms=0, completed_ms=1_200_000, disagreement_rate=0.1):
            counts[answer.worker_id] += 1
            times.setdefault(answer.worker_id, []).append(answer.time_spent_seconds)
    assert set(counts) == set(WORKERS)
    assert max(counts.values()) >= 3 * min(counts.values())
    fastest, slowest = min(WORKERS, key=SPEED.get), max(WORKERS, key=SPEED.get)
    mean = {w: sum(t) / len(t) for w, t in times.items()}
    assert mean[slowest] > 2 * mean[fastest]


def test_the_control_api_completes_a_loop_with_several_answers(a2i, flow_arn, runtime):
    from .conftest import start

    start(runtime, flow_arn, "multi")
    a2i.complete("multi", human_answers=[
        {"answerContent": {"label": "cat"}, "workerId": "w-1", "timeSpentInSeconds": 5},
        {"answerContent": {"label": "dog"}, "workerId": "w-2", "timeSpentInSeconds": 7.5,
         "acceptanceTime": "2030-01-01T00:00:00Z", "submissionTime": "2030-01-01T00:00:07.500Z"},
    ])
    output = read_output(a2i, runtime, "multi")
    first, second = output["humanAnswers"]
    assert (first["workerId"], first["answerContent"], first["timeSpentInSeconds"]) == ("w-1", {"label": "cat"}, 5.0)
    assert (second["acceptanceTime"], second["submissionTime"]) == ("2030-01-01T00:00:00.000Z", "2030-01-01T00:00:07.500Z")
    assert runtime.describe_human_loop(HumanLoopName="multi")["HumanLoopStatus"] == "Completed"


@pytest.mark.parametrize(
    ("human_answers", "message"),
    [
        ("cat", "humanAnswers must be a list of 1 to 3 answers."),
        ([], "humanAnswers must be a list of 1 to 3 answers."),
        ([{"answerContent": {}}] * 4, "humanAnswers must be a list of 1 to 3 answers."),
        ([{"answerContent": "cat"}], "humanAnswers[0] must be an object with an answerContent object."),
        (["cat"], "humanAnswers[0] must be an object with an answerContent object."),
        ([{"answerContent": {}, "workerId": "w"}, {"answerContent": {}, "workerId": "w"}], "answered already"),
        ([{"answerContent": {}, "workerId": 7}], "humanAnswers[0].workerId must be a non-empty string."),
        ([{"answerContent": {}, "timeSpentInSeconds": -1}], "timeSpentInSeconds must be a non-negative number."),
        ([{"answerContent": {}, "submissionTime": "soon"}], "submissionTime"),
    ],
)
def test_bad_human_answers_are_a_400_and_the_loop_stays_in_progress(a2i, flow_arn, runtime, human_answers, message):
    from .conftest import start

    start(runtime, flow_arn, "bad-multi")
    with pytest.raises(ControlAPIError) as caught:
        a2i.complete("bad-multi", human_answers=human_answers)
    assert caught.value.status == 400 and message in caught.value.body["message"]
    assert runtime.describe_human_loop(HumanLoopName="bad-multi")["HumanLoopStatus"] == "InProgress"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "a2i_local", *args], capture_output=True, text=True, timeout=120)


def test_seed_with_an_s3_endpoint_writes_output_json_for_the_newest_completed_loops(a2i, tmp_path):
    db = tmp_path / "seeded.sqlite3"
    result = run_cli("seed", "--db", str(db), "--flow-definitions", "3", "--loops", "400", "--random-seed", "5",
                     "--s3-endpoint", a2i.s3_url, "--task-count", "1,2,3", "--output-loops", "40")
    assert result.returncode == 0, result.stderr
    assert "(40 output.json written)" in result.stdout
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT l.name, l.creation_ms, f.name, f.output_path, f.spec FROM loops l JOIN flow_definitions f"
        " ON f.id = l.flow_definition_id WHERE l.status = 'Completed' ORDER BY l.creation_ms DESC").fetchall()
    conn.close()
    from a2i_local.output import output_uri

    s3 = a2i.client("s3")
    for position, (name, creation_ms, fd_name, output_path, spec) in enumerate(rows[:45]):
        uri = urlparse(output_uri(output_path, fd_name, name, creation_ms))
        if position >= 40:
            with pytest.raises(s3.exceptions.NoSuchKey):
                s3.get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))
            continue
        output = json.loads(s3.get_object(Bucket=uri.netloc, Key=uri.path.lstrip("/"))["Body"].read())
        task_count = json.loads(spec)["HumanLoopConfig"]["TaskCount"]
        assert output["humanLoopName"] == name and len(output["humanAnswers"]) == task_count
        assert min(ms(a["acceptanceTime"]) for a in output["humanAnswers"]) >= creation_ms
    assert {json.loads(spec)["HumanLoopConfig"]["TaskCount"] for *_, spec in rows} == {1, 2, 3}


@pytest.mark.parametrize("value", ["0", "4", "1,x", ""])
def test_seed_refuses_a_bad_task_count(tmp_path, value):
    result = run_cli("seed", "--db", str(tmp_path / "s.sqlite3"), "--flow-definitions", "1", "--loops", "1", "--task-count", value)
    assert result.returncode == 2 and "--task-count" in result.stderr
