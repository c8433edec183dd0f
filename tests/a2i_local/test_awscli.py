"""The AWS CLI (the `awscli` package in the venv) against A2I Local, as a real subprocess."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

AWS = Path(sys.executable).with_name("aws")


@pytest.fixture
def aws(a2i, tmp_path):
    if not AWS.exists():
        pytest.skip(f"{AWS} not installed (pip install -e '.[test]')")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),  # no ~/.aws of the machine's user leaks in
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": a2i.region,
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_PAGER": "",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(AWS), "--endpoint-url", a2i.url, "--output", "json", "sagemaker-a2i-runtime", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def started(a2i):
    """Ten loops started one after the other, oldest first."""
    flow_arn = a2i.create_flow_definition("cli-flow")
    runtime = a2i.client("sagemaker-a2i-runtime")
    names = []
    for n in range(10):
        name = f"cli-loop-{n}"
        runtime.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=flow_arn, HumanLoopInput={"InputContent": json.dumps({"n": n})}
        )
        names.append(name)
        time.sleep(0.003)  # distinct millisecond creation times, so the order is defined
    return flow_arn, names


def list_calls(stderr: str) -> int:
    """How many ListHumanLoops HTTP calls the CLI made, from its --debug log."""
    return stderr.count("OperationModel(name=ListHumanLoops)")


def test_list_human_loops_pages_through_every_loop_in_order(aws, started):
    flow_arn, names = started
    result = aws("list-human-loops", "--flow-definition-arn", flow_arn, "--page-size", "3", "--debug")
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = json.loads(result.stdout)["HumanLoopSummaries"]
    # Default SortOrder is Descending by creation time: newest first.
    assert [s["HumanLoopName"] for s in summaries] == names[::-1]
    assert {s["HumanLoopStatus"] for s in summaries} == {"InProgress"}
    assert list_calls(result.stderr) == 4  # 3 + 3 + 3 + 1


def test_max_items_and_starting_token_resume_where_the_cli_stopped(aws, started):
    flow_arn, names = started
    common = ("list-human-loops", "--flow-definition-arn", flow_arn, "--sort-order", "Ascending", "--page-size", "4")
    first = aws(*common, "--max-items", "6", "--debug")
    assert first.returncode == 0, first.stderr[-2000:]
    first_page = json.loads(first.stdout)
    assert [s["HumanLoopName"] for s in first_page["HumanLoopSummaries"]] == names[:6]
    assert list_calls(first.stderr) == 2
    assert first_page["NextToken"]

    rest = aws(*common, "--starting-token", first_page["NextToken"])
    assert rest.returncode == 0, rest.stderr[-2000:]
    rest_page = json.loads(rest.stdout)
    assert [s["HumanLoopName"] for s in rest_page["HumanLoopSummaries"]] == names[6:]
    assert "NextToken" not in rest_page


def test_describe_human_loop(aws, started, a2i):
    flow_arn, names = started
    a2i.complete(names[0], answer={"label": "cat"})
    result = aws("describe-human-loop", "--human-loop-name", names[0])
    assert result.returncode == 0, result.stderr
    loop = json.loads(result.stdout)
    assert loop["HumanLoopName"] == names[0]
    assert loop["HumanLoopStatus"] == "Completed"
    assert loop["FlowDefinitionArn"] == flow_arn
    assert loop["HumanLoopArn"].endswith(f":human-loop/{names[0]}")
    assert loop["HumanLoopOutput"]["OutputS3Uri"].endswith(f"/{names[0]}/output.json")
    assert loop["CreationTime"]


def test_unknown_loop_exits_non_zero_with_the_aws_error_code(aws, a2i):
    result = aws("describe-human-loop", "--human-loop-name", "no-such-loop")
    assert result.returncode != 0
    assert "ResourceNotFoundException" in result.stderr
    assert "DescribeHumanLoop" in result.stderr
    assert result.stdout == ""


def test_server_side_validation_error_exits_non_zero(aws, started):
    flow_arn, _ = started
    # botocore does not check the upper bound of MaxResults; A2I Local must.
    result = aws("list-human-loops", "--flow-definition-arn", flow_arn, "--max-results", "101")
    assert result.returncode != 0
    assert "ValidationException" in result.stderr
