"""`make run` end to end: scripts/run.py on free ports in a temporary folder.

It must print the URL and a login that works, populate the dashboard before the first
page load, run Celery through Redis or (when none answers) the embedded filesystem
broker, wire A2I Local's events into the dashboard, and leave no process behind after
Ctrl-C or after one of its children dies.
"""

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

STARTED = re.compile(r"^run\s*\| started (\S+) \(pid (\d+)\)")
BANNER_URL = re.compile(r"A2I loop dashboard: (http://\S+)")
BANNER_LOGIN = re.compile(r"Login: (\S+) / (\S+)")
A2I_URL = re.compile(r"A2I Local: (http://\S+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def private_redis_url():
    """An empty Redis database of its own, flushed afterwards.

    Not REDIS_URL's: a Celery worker another test left running on that database would
    take the tasks this run's beat sends (and run them against its own database), and
    this run's worker would take theirs.
    """
    import redis

    parsed = urlsplit(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    # This process's database, and the other pytest-xdist workers' (tests/xdist_worker.py).
    taken = {int(parsed.path.strip("/") or 0), *map(int, filter(None, os.environ.get("TEST_REDIS_DATABASES", "").split(",")))}
    try:
        redis.Redis.from_url(parsed.geturl(), socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis answers at REDIS_URL ({exc}); the embedded-broker case still runs")
    for db in range(15, -1, -1):
        url = urlunsplit((parsed.scheme, parsed.netloc, f"/{db}", "", ""))
        client = redis.Redis.from_url(url)
        if db not in taken and client.dbsize() == 0:
            yield url
            client.flushdb()
            return
    pytest.skip("no empty Redis database to give this test")


class MakeRun:
    """scripts/run.py as a subprocess, its output collected line by line."""

    def __init__(self, tmp_path: Path, redis_url: str | None, sigint_ignored: bool = False):
        self.var = tmp_path / "var"
        # A developer's shell: none of the test process's AWS/Celery/run settings, nor the
        # browser fixture's DJANGO_ALLOW_ASYNC_UNSAFE, nor the suite's page cache switch
        # (with Redis, the page cache is on, as for a newcomer).
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "CELERY_", "RUN_")) and k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "PAGE_CACHE_SECONDS")
        }
        env.update(
            RUN_WEB_PORT=str(free_port()),
            RUN_A2I_PORT=str(free_port()),
            RUN_S3_PORT=str(free_port()),
            RUN_VAR_DIR=str(self.var),
            RUN_SEED_LOOPS="300",
            RUN_STOP_TIMEOUT="15",
            DATABASE_URL=f"sqlite:///{self.var / 'dashboard.sqlite3'}",
            # A port where nothing listens makes run.py fall back to the embedded broker.
            REDIS_URL=redis_url or f"redis://127.0.0.1:{free_port()}/0",
            PYTHONUNBUFFERED="1",
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # As a shell starts a background job (`make run &`): SIGINT ignored on entry.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := pattern.search(line):
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"no line matching {pattern.pattern!r}; output:\n{self.output[-6000:]}")

    def children(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for line in list(self.lines) if (m := STARTED.search(line))}

    def kill_everything(self) -> None:
        # Last resort after a failed assertion, so a broken test leaves nothing running.
        for pid in [self.proc.pid, *self.children().values()]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait(timeout=10)


def stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc/<pid>/stat file after the command name: state, ppid, pgrp, session, ..."""
    return stat.read_text().rsplit(")", 1)[1].split()


def session_of(pid: int) -> int:
    return int(stat_fields(Path(f"/proc/{pid}/stat"))[3])


def live_processes_in_groups(groups: set[int]) -> list[str]:
    """Processes (not zombies) whose process group is one of `groups`, read from /proc."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_fields(stat)
        except OSError:
            continue
        state, pgid = fields[0], int(fields[2])
        if pgid in groups and state != "Z":
            alive.append(f"{stat.parent.name} (group {pgid})")
    return alive


def wait_until_gone(groups: set[int], timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while (alive := live_processes_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def rows(db: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def count_rows(db: Path, table: str) -> int:
    return rows(db, f"select count(*) from {table}")[0][0]


def log_in(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    login_url = f"{url}accounts/login/"
    page = session.get(login_url, timeout=30)
    assert page.status_code == 200
    token = session.cookies["csrftoken"]
    response = session.post(
        login_url,
        data={"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/"},
        headers={"Referer": login_url},
        timeout=30,
    )
    assert response.status_code == 200 and response.url == url, (response.status_code, response.url)
    return session


@pytest.fixture
def make_run(tmp_path):
    runs: list[MakeRun] = []

    def start(redis_url: str | None, sigint_ignored: bool = False) -> MakeRun:
        """Start scripts/run.py with Redis at redis_url, or with no Redis answering when None."""
        runs.append(MakeRun(tmp_path, redis_url, sigint_ignored))
        return runs[-1]

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.kill_everything()


@pytest.fixture(params=["redis", "embedded"])
def broker(request):
    """(Redis URL or None, the broker line run.py must print)."""
    if request.param == "embedded":
        return None, "EMBEDDED broker: kombu filesystem transport"
    url = request.getfixturevalue("private_redis_url")
    return url, f"broker: Redis at {url}"


def test_make_run_serves_the_dashboard_and_ctrl_c_stops_everything(make_run, broker):
    redis_url, broker_line = broker
    # The embedded case also starts like a background job, with SIGINT ignored.
    run = make_run(redis_url, sigint_ignored=redis_url is None)
    url = run.wait_for(BANNER_URL, timeout=240).group(1)
    username, password = run.wait_for(BANNER_LOGIN, timeout=5).groups()
    assert broker_line in run.output

    # The up-front sync filled the database before the first page load.
    db = run.var / "dashboard.sqlite3"
    assert count_rows(db, "loops_flowdefinition") == 3
    assert count_rows(db, "loops_humanloop") >= 300
    # ... and the newest seeded loops' answers were read from their output.json.
    assert count_rows(db, "loops_humananswer") > 0

    session = log_in(url, username, password)
    overview = session.get(url, timeout=30)
    assert overview.status_code == 200 and "/accounts/login/" not in overview.url
    reviewers = session.get(url + "reviewers/", timeout=30)
    assert reviewers.status_code == 200 and 'href="/reviewers/' in reviewers.text
    # Served by gunicorn, as in production, with the static files from the app (whitenoise).
    assert overview.headers.get("Server", "").startswith("gunicorn"), overview.headers
    # No keep-alive (dashboard/gunicorn.conf.py): each request goes to the least busy process.
    assert overview.headers.get("Connection") == "close", overview.headers
    stylesheet = session.get(f"{url}static/css/app.css", timeout=30)
    assert stylesheet.status_code == 200 and "text/css" in stylesheet.headers["Content-Type"]

    # Worker and beat really talk through the broker: beat's heartbeat task (every 15 s)
    # runs on the worker and writes its row.
    deadline = time.monotonic() + 60
    while count_rows(db, "loops_workerheartbeat") == 0:
        assert time.monotonic() < deadline, f"no worker heartbeat within 60 s:\n{run.output[-4000:]}"
        time.sleep(1)

    assert_a_completed_loop_reaches_the_dashboard_through_its_event(run, db)

    children = run.children()
    assert {"s3", "a2i-local", "worker", "beat", "web"} <= set(children)
    # The worker yields the CPU to the web server: it runs 10 steps nicer (WORKER_NICENESS)
    # and in the same session, since autogroup scheduling weighs sessions against each
    # other as wholes and a niceness would count only inside its own session.
    assert session_of(children["worker"]) == session_of(children["web"]) == session_of(run.proc.pid)
    web_priority = os.getpriority(os.PRIO_PROCESS, children["web"])
    assert os.getpriority(os.PRIO_PROCESS, children["worker"]) == min(19, web_priority + 10)
    run.proc.send_signal(signal.SIGINT)
    assert run.proc.wait(timeout=60) == 0, run.output[-4000:]
    assert "all processes stopped" in run.output
    assert wait_until_gone(set(children.values())) == []


def assert_a_completed_loop_reaches_the_dashboard_through_its_event(run, db: Path) -> None:
    """A new loop, completed at once in A2I Local: the dashboard learns of it from its event
    alone, within seconds (a sync would take up to 30 s)."""
    a2i_url = run.wait_for(A2I_URL, timeout=5).group(1)
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
    assert seconds < 5, seconds


def test_make_run_stops_everything_when_a_child_dies(make_run):
    run = make_run(None)
    run.wait_for(BANNER_URL, timeout=240)
    children = run.children()
    os.kill(children["a2i-local"], signal.SIGKILL)
    assert run.proc.wait(timeout=60) == 1
    assert "a2i-local exited with code -9: stopping everything" in run.output
    assert wait_until_gone(set(children.values())) == []


def test_make_run_refuses_a_busy_port_before_starting_anything(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "RUN_WEB_PORT": str(port), "RUN_VAR_DIR": str(tmp_path / "var"),
               "RUN_A2I_PORT": str(free_port()), "RUN_S3_PORT": str(free_port())}
        result = subprocess.run(
            [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"could not start: port(s) {port} already in use" in result.stdout
    assert "started" not in result.stdout  # no migrate, no seed, no service


def load_run_script(monkeypatch, **env):
    import importlib.util

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("make_run_script", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_serves_with_gunicorn_unless_run_reload_asks_for_runserver(monkeypatch):
    gunicorn = load_run_script(monkeypatch, RUN_RELOAD="0", RUN_WEB_PORT="8123").web_argv()
    assert Path(gunicorn[0]).name == "gunicorn" and gunicorn[-1] == "dashboard.wsgi"
    assert "127.0.0.1:8123" in gunicorn and str(ROOT / "dashboard" / "gunicorn.conf.py") in gunicorn

    runserver = load_run_script(monkeypatch, RUN_RELOAD="1", RUN_WEB_PORT="8123").web_argv()
    assert runserver[1:] == ["manage.py", "runserver", "127.0.0.1:8123"]  # autoreload is runserver's default
