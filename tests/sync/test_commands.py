"""sync_loops and export_loops, as an operator runs them."""

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from loops.models import HumanLoop
from loops.services.sync import sync_flow_definition
from tests.conftest import requires_postgresql, start_loops

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Run manage.py in a fresh process against the test database, with only `env` for AWS."""
    db = connection.settings_dict
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        A2I_MAX_ATTEMPTS="1",
        A2I_CONNECT_TIMEOUT="2",
        # No shared credentials file, no profile, no instance metadata: the chain has nothing.
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
        AWS_CONFIG_FILE="/nonexistent/config",
        AWS_EC2_METADATA_DISABLED="true",
    )
    base.update(env)
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=base, capture_output=True, text=True, timeout=120
    )


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_sync_loops_with_an_unreachable_endpoint_prints_one_line_and_exits_1():
    result = manage(
        "sync_loops",
        env={
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "y",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "unreachable" in lines[0] and "Traceback" not in result.stderr


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_sync_loops_without_credentials_prints_one_line_and_exits_1():
    result = manage(
        "sync_loops", env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "credentials" in lines[0] and "Traceback" not in result.stderr


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_sync_loops_discovers_syncs_and_prints_a_line_per_flow_definition(aws):
    arns = [aws.create_flow_definition(f"cmd-{i}") for i in range(2)]
    client = aws.client("sagemaker-a2i-runtime")
    for i in range(3):
        client.start_human_loop(HumanLoopName=f"cmd-loop-{i}", FlowDefinitionArn=arns[0], HumanLoopInput={"InputContent": "{}"})
    env = {
        "AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME": aws.url,
        "AWS_ENDPOINT_URL_SAGEMAKER": aws.url,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": aws.region,
        "A2I_REGIONS": aws.region,
    }

    result = manage("sync_loops", "--full", env=env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    line = next(line for line in lines if line.startswith(arns[0]))
    assert "full succeeded" in line and "created=3" in line
    assert HumanLoop.objects.count() == 3

    only = manage("sync_loops", "--flow-definition", arns[1], env=env)
    assert only.returncode == 0 and only.stdout.strip().splitlines() == [
        line for line in only.stdout.strip().splitlines() if line.startswith(arns[1])
    ]
    unknown = manage("sync_loops", "--flow-definition", arns[1] + "-nope", env=env)
    assert unknown.returncode == 1 and "no flow definition" in unknown.stderr


@pytest.mark.django_db
def test_export_loops_writes_a2i_field_names_one_object_a_line_including_deleted(aws, flow_definition):
    names = start_loops(aws, flow_definition, 4)
    aws.fail(names[0], "ValidationError", 'bad "input"')
    aws.complete(names[1], answer={"label": "cat"})
    sync_flow_definition(flow_definition.pk, full=True)
    aws.client("sagemaker-a2i-runtime").delete_human_loop(HumanLoopName=names[1])
    sync_flow_definition(flow_definition.pk, full=True)

    out = io.StringIO()
    call_command("export_loops", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]

    assert len(rows) == 4
    assert all(
        list(row) == ["HumanLoopName", "HumanLoopStatus", "CreationTime", "FailureReason", "FailureCode",
                      "FlowDefinitionArn", "HumanLoopArn", "DeletedUpstream"]
        for row in rows
    )
    by_name = {row["HumanLoopName"]: row for row in rows}
    failed = by_name[names[0]]
    assert (failed["HumanLoopStatus"], failed["FailureReason"], failed["FailureCode"]) == (
        "Failed", 'bad "input"', "ValidationError")
    assert by_name[names[1]]["DeletedUpstream"] is True and by_name[names[2]]["DeletedUpstream"] is False
    assert by_name[names[2]]["FailureCode"] is None
    assert by_name[names[2]]["CreationTime"].endswith("Z") and len(by_name[names[2]]["CreationTime"]) == 24
    assert by_name[names[2]]["FlowDefinitionArn"] == flow_definition.arn

    filtered = io.StringIO()
    call_command("export_loops", "--status", "Failed", "--flow-definition", flow_definition.arn, stdout=filtered)
    assert [json.loads(line)["HumanLoopName"] for line in filtered.getvalue().splitlines()] == [names[0]]


@pytest.mark.django_db
def test_export_loops_rejects_an_unknown_status_or_flow_definition():
    with pytest.raises(CommandError, match="unknown status Running"):
        call_command("export_loops", "--status", "Running", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no flow definition"):
        call_command("export_loops", "--flow-definition", "arn:aws:sagemaker:us-east-1:1:flow-definition/x", stdout=io.StringIO())
