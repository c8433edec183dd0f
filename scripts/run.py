#!/usr/bin/env python
"""`make run`: the whole product on one machine, with no AWS account.

Steps, in order:
  1. create the var folder; choose the broker (Redis at REDIS_URL when it answers
     a PING, otherwise kombu's filesystem transport under var/broker, named in the output);
  2. migrate; create the demo admin (local-only password, printed) and the default alert
     rules; e-mail goes to files in var/mail/ (printed);
  3. start moto's S3 server; seed A2I Local's SQLite store once (skipped when the file
     exists), with output.json for the most recent Completed loops;
  4. start A2I Local (simulated workforce, new loops arriving, its status-change events
     POSTed to the dashboard's endpoint with a generated token), a Celery worker and
     beat, run one sync and read the newest loops' answers so the first pages are
     populated, then start the web server (gunicorn, or runserver with autoreload when
     RUN_RELOAD=1) and print its URL and the login.

Every child runs in its own process group and its output lines are prefixed with
its name. Ctrl-C (SIGINT) or SIGTERM stops every process this script started
(SIGTERM to each group, then SIGKILL after a timeout); if one child dies, the
script says so and stops the others.

Ports, the var folder and the seed size come from the environment (RUN_* below) so
tests can run it on free ports in a temporary folder. Uses the standard library
and redis-py only.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from a2i_local.endpoints import boto3_environ

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

HOST = os.environ.get("RUN_HOST", "127.0.0.1")
WEB_PORT = int(os.environ.get("RUN_WEB_PORT", "8000"))
A2I_PORT = int(os.environ.get("RUN_A2I_PORT", "8001"))
S3_PORT = int(os.environ.get("RUN_S3_PORT", "8002"))
VAR = Path(os.environ.get("RUN_VAR_DIR", ROOT / "var")).resolve()
SEED_FLOW_DEFINITIONS = os.environ.get("RUN_SEED_FLOW_DEFINITIONS", "3")
SEED_LOOPS = os.environ.get("RUN_SEED_LOOPS", "5000")
# How many of the newest seeded Completed loops get an output.json (moto takes ~5 ms a file).
SEED_OUTPUTS = os.environ.get("RUN_SEED_OUTPUTS", "300")
# New loops per second started by A2I Local's simulated workforce.
START_RATE = os.environ.get("RUN_START_RATE", "0.5")
STOP_TIMEOUT = float(os.environ.get("RUN_STOP_TIMEOUT", "10"))
# 1: the web server is runserver with autoreload instead of gunicorn.
RELOAD = os.environ.get("RUN_RELOAD", "0") == "1"
READY_TIMEOUT = 60.0

_print_lock = threading.Lock()


def say(name: str, line: str) -> None:
    with _print_lock:
        print(f"{name:<9}| {line}", flush=True)


class Child:
    """One supervised process in its own process group, output prefixed with its name."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], hide: re.Pattern | None = None, record: bool = False
    ):
        self.name = name
        self.hide = hide
        # Only set-up steps keep their output (to read the login from it); a service
        # that runs for days must not accumulate its log in memory.
        self.record = record
        self.lines: list[str] = []
        # process_group=0: a terminal's Ctrl-C reaches only this script, which then
        # stops the children in order; killpg also reaches their own children
        # (runserver's autoreloader, the worker's pool processes). A process group, not
        # a new session: with the kernel's autogroup scheduling (sched_autogroup_enabled,
        # on by default on desktop and many server kernels) every session is scheduled
        # as one unit with an equal share, and the worker's WORKER_NICENESS would weigh
        # nothing against the web server in another session.
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            process_group=0,
        )
        STARTED.append(self)
        say("run", f"started {name} (pid {self.proc.pid}): {' '.join(argv)}")
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            if self.record:
                self.lines.append(line)
            if not (self.hide and self.hide.search(line)):
                say(self.name, line.rstrip("\n"))

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass


# Every process this script started, services and set-up steps alike, oldest first.
STARTED: list[Child] = []


def run_step(name: str, argv: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, str]:
    """Run one set-up command to completion (its output prefixed); return (exit code, output)."""
    step = Child(name, argv, env, record=True)
    try:
        code = step.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        step.signal_group(signal.SIGKILL)
        code = step.proc.wait()
        say("run", f"{name} took more than {timeout:.0f} s: killed")
    step._reader.join(timeout=5)
    return code, "".join(step.lines)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def wait_for_port(child: Child, port: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not port_open(port):
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {child.proc.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} did not listen on port {port} within {READY_TIMEOUT:.0f} s")
        time.sleep(0.2)


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def build_env() -> tuple[dict[str, str], str]:
    """The children's environment and a one-line description of the broker chosen."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'dashboard.sqlite3'}")
    # boto3 reads these itself: the dashboard talks to A2I Local and moto exactly as
    # it would to AWS. A value the user already set wins.
    local = boto3_environ(f"http://{HOST}:{A2I_PORT}", f"http://{HOST}:{S3_PORT}", "us-east-1", credentials="local")
    for key, value in local.items():
        env.setdefault(key, value)
    # Alert e-mails land as files a newcomer can open; links point at this web server.
    env.setdefault("EMAIL_URL", f"file://{VAR / 'mail'}")
    env.setdefault("A2I_SITE_URL", f"http://{HOST}:{WEB_PORT}")
    # A2I Local sends its events to the web server with this token (docs/events.md).
    if not env.get("A2I_EVENTS_TOKEN"):
        env["A2I_EVENTS_TOKEN"] = secrets.token_urlsafe(32)

    if env.get("CELERY_BROKER_URL"):
        return env, f"CELERY_BROKER_URL={env['CELERY_BROKER_URL']} (as configured)"
    redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(redis_url):
        return env, f"Redis at {redis_url}"
    env["CELERY_BROKER_URL"] = "filesystem://"
    env["CELERY_BROKER_FOLDER"] = str(VAR / "broker")
    return env, (
        f"EMBEDDED broker: kombu filesystem transport in {VAR / 'broker'} "
        f"(no Redis answered at {redis_url}; set REDIS_URL to use one)"
    )


def seed_a2i_local(env: dict[str, str], db: Path, s3_url: str) -> None:
    if db.exists():
        say("run", f"A2I Local store {db} exists: not seeding again (delete it to start over)")
        return
    # Seed into a temporary file and rename, so an interrupted seed never leaves a
    # half-filled store that the next run would take as done.
    tmp = db.with_name(db.name + ".seeding")
    for leftover in VAR.glob(tmp.name + "*"):
        leftover.unlink()
    code, _ = run_step(
        "seed",
        [PYTHON, "-m", "a2i_local", "seed", "--db", str(tmp),
         "--flow-definitions", SEED_FLOW_DEFINITIONS, "--loops", SEED_LOOPS, "--region", env["AWS_DEFAULT_REGION"],
         # One, two and three reviewers per loop, so the reviewers page shows agreement too.
         "--task-count", "1,2,3", "--s3-endpoint", s3_url, "--output-loops", SEED_OUTPUTS],
        env,
    )
    if code != 0:
        raise RuntimeError(f"seeding A2I Local failed (exit {code})")
    os.replace(tmp, db)


def start_all(env: dict[str, str], broker: str) -> list[Child]:
    busy = [port for port in (WEB_PORT, A2I_PORT, S3_PORT) if port_open(port)]
    if busy:
        raise RuntimeError(
            f"port(s) {', '.join(map(str, busy))} already in use on {HOST} "
            "(another `make run`?); set RUN_WEB_PORT, RUN_A2I_PORT, RUN_S3_PORT to choose others"
        )
    say("run", f"broker: {broker}")
    manage = [PYTHON, "manage.py"]
    code, _ = run_step("migrate", manage + ["migrate", "--noinput"], env)
    if code != 0:
        raise RuntimeError(f"migrate failed (exit {code})")
    code, output = run_step("admin", manage + ["create_demo_admin"], env)
    if code != 0:
        raise RuntimeError(f"create_demo_admin failed (exit {code})")
    login = re.search(r"login (\S+) / (\S+)", output)
    code, _ = run_step("alerts", manage + ["create_default_alerts"], env)
    if code != 0:
        raise RuntimeError(f"create_default_alerts failed (exit {code})")

    # moto logs every request; the workforce writes an output.json per completed loop.
    # Only failed requests are worth a line (and the seeded loops without output.json).
    quiet = re.compile(r'"(GET|PUT|HEAD|POST|DELETE) \S+ HTTP/1\.1" ([23]\d\d|404) ')
    s3 = Child("s3", [str(BIN / "moto_server"), "-H", HOST, "-p", str(S3_PORT)], env, hide=quiet)
    wait_for_port(s3, S3_PORT)
    a2i_db = VAR / "a2i-local.sqlite3"
    seed_a2i_local(env, a2i_db, f"http://{HOST}:{S3_PORT}")
    a2i = Child(
        "a2i-local",
        [PYTHON, "-m", "a2i_local", "serve", "--host", HOST, "--port", str(A2I_PORT), "--db", str(a2i_db),
         "--region", env["AWS_DEFAULT_REGION"], "--workforce", "--workforce-start-rate", START_RATE,
         "--s3-endpoint", f"http://{HOST}:{S3_PORT}",
         # Events POSTed before the web server listens are retried (for about 2 minutes).
         # "--flag=value": a token_urlsafe() token may begin with "-", which argparse
         # would take for an option when given as a separate argument.
         "--event-webhook", f"http://{HOST}:{WEB_PORT}/events/eventbridge/",
         f"--event-webhook-token={env['A2I_EVENTS_TOKEN']}"],
        env,
    )
    wait_for_port(a2i, A2I_PORT)

    celery = str(BIN / "celery")
    worker = Child("worker", [celery, "-A", "dashboard", "worker", "-l", "info", "--concurrency", "2"], env)
    beat = Child("beat", [celery, "-A", "dashboard", "beat", "-l", "info", "-s", str(VAR / "celerybeat-schedule")], env)
    # One sync now, so the dashboard is populated on first load rather than after beat's first tick.
    code, _ = run_step("sync", manage + ["sync_loops"], env, timeout=300)
    if code != 0:
        say("run", f"initial sync_loops failed (exit {code}); the worker retries on its schedule")
    # The newest loops' answers now, so the reviewers page is populated; the worker reads the rest.
    code, _ = run_step("answers", manage + ["ingest_answers", "--limit", SEED_OUTPUTS], env, timeout=120)
    if code != 0:
        say("run", f"initial ingest_answers failed (exit {code}); the worker retries on its schedule")

    web = Child("web", web_argv(), env)
    wait_for_port(web, WEB_PORT)

    user, password = login.groups() if login else ("?", "?")
    banner = [
        "=" * 72,
        f"A2I loop dashboard: http://{HOST}:{WEB_PORT}/",
        f"Login: {user} / {password}   (LOCAL DEMO ONLY)",
        f"A2I Local: http://{HOST}:{A2I_PORT}   S3 (moto): http://{HOST}:{S3_PORT}   data: {VAR}",
        f"Broker: {broker}",
        f"Alert e-mails: {env['EMAIL_URL']} (default rules: expiring, sync_stale)",
        "Ctrl-C stops everything.",
        "=" * 72,
    ]
    for line in banner:
        say("run", line)
    return [s3, a2i, worker, beat, web]


def web_argv() -> list[str]:
    """gunicorn as in production (threads, whitenoise; dashboard/gunicorn.conf.py), or
    runserver with autoreload when RUN_RELOAD=1 (for people changing the code)."""
    if RELOAD:
        return [PYTHON, "manage.py", "runserver", f"{HOST}:{WEB_PORT}"]
    return [str(BIN / "gunicorn"), "--config", str(ROOT / "dashboard" / "gunicorn.conf.py"),
            "--bind", f"{HOST}:{WEB_PORT}", "dashboard.wsgi"]


def stop_all() -> None:
    """SIGTERM every group (newest first), wait, then SIGKILL what is left."""
    for child in reversed(STARTED):
        if child.proc.poll() is None:
            say("run", f"stopping {child.name}")
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child in reversed(STARTED):
        try:
            child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say("run", f"{child.name} ignored SIGTERM for {STOP_TIMEOUT:.0f} s: killing it")
            child.signal_group(signal.SIGKILL)
            child.proc.wait()
        # The leader has exited; anything still in its group (a pool process) goes too.
        child.signal_group(signal.SIGKILL)
    say("run", "all processes stopped")


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    VAR.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a test, systemd) behaves like Ctrl-C. SIGINT is set explicitly because a
    # shell starts background jobs with SIGINT ignored, and Python then keeps it ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    exit_code = 0
    try:
        env, broker = build_env()
        services = start_all(env, broker)
        while True:
            dead = [child for child in services if child.proc.poll() is not None]
            if dead:
                for child in dead:
                    say("run", f"{child.name} exited with code {child.proc.returncode}: stopping everything")
                exit_code = 1
                break
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("run", "interrupted: stopping everything")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        say("run", f"could not start: {exc}")
        exit_code = 1
    finally:
        # A second Ctrl-C must not abandon the shutdown half-way; the SIGKILL timeout bounds it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
