"""`make run` wires A2I Local's events into the dashboard: a loop completed in A2I Local shows
Completed in the dashboard's database within seconds, through its event."""

import json
import re
import signal
import sqlite3
import time
import urllib.request
import uuid

import boto3
import pytest

from tests.platform.test_make_run import BANNER_URL, make_run  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
A2I_URL = re.compile(r"A2I Local: (http://\S+)")


def rows(db, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_loop_completed_in_a2i_local_reaches_the_dashboard_through_its_event(make_run):  # noqa: F811
    run = make_run(None)
    run.wait_for(BANNER_URL, timeout=240)
    a2i_url = run.wait_for(A2I_URL, timeout=5).group(1)
    db = run.var / "dashboard.sqlite3"

    # A new loop, completed at once: the dashboard learns of it from its event alone (the
    # simulated workforce settles the seeded InProgress loops within seconds of starting).
    runtime = boto3.client("sagemaker-a2i-runtime", endpoint_url=a2i_url, region_name="us-east-1",
                           aws_access_key_id="local", aws_secret_access_key="local")
    ((fd_arn,),) = rows(db, "select arn from loops_flowdefinition order by name limit 1")
    name = f"make-run-{uuid.uuid4().hex[:8]}"
    runtime.start_human_loop(HumanLoopName=name, FlowDefinitionArn=fd_arn, HumanLoopInput={"InputContent": "{}"})
    request = urllib.request.Request(f"{a2i_url}/_local/human-loops/{name}/complete", method="POST",
                                     data=json.dumps({"answerContent": {"label": "cat"}}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    completed_at = time.monotonic()

    deadline = time.monotonic() + 15
    while rows(db, "select status from loops_humanloop where name = ?", name) != [("Completed",)]:
        assert time.monotonic() < deadline, run.output[-4000:]
        time.sleep(0.1)
    seconds = time.monotonic() - completed_at
    (source,) = rows(db, "select c.source from loops_humanloopstatuschange c join loops_humanloop l on l.id = c.loop_id "
                         "where l.name = ? and c.to_status = 'Completed'", name)
    assert source == ("event",)
    assert rows(db, "select e.result from loops_receivedevent e join loops_humanloop l on l.id = e.loop_id "
                    "where l.name = ?", name) == [("applied",)]
    assert seconds < 5, seconds  # a sync would take up to 30 s
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=60) == 0
