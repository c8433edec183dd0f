"""`make run` wires A2I Local's events into the dashboard: a loop completed in A2I Local shows
Completed in the dashboard's database within seconds, through its event."""

import json
import re
import signal
import sqlite3
import time
import urllib.error
import urllib.request

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

    completed_at, name = None, None
    for (candidate,) in rows(db, "select name from loops_humanloop where status = 'InProgress' order by creation_time desc"):
        request = urllib.request.Request(f"{a2i_url}/_local/human-loops/{candidate}/complete", method="POST",
                                         data=json.dumps({"answerContent": {"label": "cat"}}).encode())
        try:
            with urllib.request.urlopen(request, timeout=10):
                completed_at, name = time.monotonic(), candidate
                break
        except urllib.error.HTTPError as exc:
            assert exc.code == 409  # the simulated workforce got there first: try another
    assert name, "no InProgress loop to complete"

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
