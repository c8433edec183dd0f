"""Benchmark the dashboard under concurrent users, through gunicorn, while the sync writes.

The world: A2I Local seeded with N loops (default 1,000,000) over 10 flow definitions
(its simulated workforce on, so loops keep changing), moto's S3, and PostgreSQL filled
by a full sync of them (the product's own sync, timed). Then:

- the web server as `make run` starts it: gunicorn with dashboard/gunicorn.conf.py
  (processes with threads, whitenoise), here with DEBUG off and the access log off;
- an incremental sync of every flow definition every --sync-interval seconds (30) in a
  process of its own;
- locust, headless (bench/locustfile.py), --users logged-in users (20) mixing the
  overview, the loop list (unfiltered; flow definition + status + 7-day window; deep
  pages) and loop pages, in two modes:
  * steady: each user at constant_throughput(2.5), 50 requests/s in all
    (target: p95 <= 100 ms per page kind, no error);
  * saturation: no wait between requests (target: >= 120 requests/s).
  After --warmup seconds (logins, cold caches) locust restarts its statistics and the
  CPU seconds of each part are counted for --duration seconds: web (gunicorn and its
  workers), PostgreSQL (this database's backends, and apart the server's maintenance:
  autovacuum, checkpointer, WAL writer), the load generator (locust), the sync, A2I Local
  and moto. Before that, the database is VACUUMed once after the initial full sync (under
  a second here), so the clean-up of a first sync does not land in a measured window.

Uses the PostgreSQL database `bench_load` (created, migrated and emptied here).
Prints a summary and writes bench/results/load.json.
Usage: python -m bench.load [--loops N] [--users U] [--duration S] [--warmup S] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BackendCpu, empty_database, ensure_database, percentile, proc_cpu

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "load.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_load"
PASSWORD = "bench-load-password"
TARGET_P95_MS = 100
TARGET_SATURATION_RPS = 120
# The world (A2I Local and moto stand in for AWS, which runs on other machines) and the
# sync (as `make run` and docker-compose run the Celery worker) yield the CPU to pages.
NICE = ["nice", "-n", "10"]
KINDS = ("overview", "list", "list_fd_status_7d", "list_deep_page", "loop_page")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{process.args[0]} exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port} after {timeout:.0f} s")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (gunicorn's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += proc_cpu(current)
        todo.extend(children.get(current, []))
    return total


class Processes:
    """The processes this benchmark started; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def start(self, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        # A process group of its own (for killpg), in this benchmark's session: with autogroup
        # scheduling a new session would be scheduled as a unit of its own, and `nice` would
        # weigh nothing against the web server (scripts/run.py does the same).
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                   process_group=0)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.started):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def app_env(database_url: str, a2i_url: str, s3_url: str) -> dict:
    from a2i_local.endpoints import boto3_environ

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "A2I_"))}
    env.update(
        DATABASE_URL=database_url, DEBUG="false", SECRET_KEY="benchmark-only-" + "x" * 50,
        ALLOWED_HOSTS="127.0.0.1,localhost", SECURE_SSL_REDIRECT="false", SECURE_COOKIES="false", LOG_LEVEL="WARNING",
        A2I_REGIONS="us-east-1", **boto3_environ(a2i_url, s3_url, "us-east-1", credentials="bench"),
    )
    return env


def vacuum(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")


def prepare_plan(database_url: str, users: int, path: Path) -> dict:
    """Users (operator role), flow-definition ARNs and a sample of loop ids, for the locustfile."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from bench.common import operator_user
    from loops.models import FlowDefinition, HumanLoop

    names = [f"load-{n:02d}" for n in range(users)]
    for name in names:
        operator_user(name, PASSWORD)
    ids = list(HumanLoop.objects.order_by("?").values_list("id", flat=True)[:2000])
    loops = HumanLoop.objects.count()
    last_page = max(2, loops // 50)
    plan = {
        "users": names, "password": PASSWORD,
        "flow_definitions": list(FlowDefinition.objects.values_list("arn", flat=True)),
        "loop_ids": ids, "deep_pages": [min(100, last_page // 2), min(500, last_page)],
    }
    path.write_text(json.dumps(plan))
    return plan


def read_stats(csv_path: Path) -> dict:
    """Per page kind from locust's *_stats.csv: requests, failures, p50/p95/p99 ms, requests/s."""
    def number(value: str) -> float | None:
        return None if value in ("", "N/A") else float(value)

    kinds, total = {}, {}
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            figures = {
                "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                "p50_ms": number(row["50%"]), "p95_ms": number(row["95%"]), "p99_ms": number(row["99%"]),
                "requests_per_second": round(number(row["Requests/s"]) or 0.0, 1),
            }
            if row["Name"] == "Aggregated":
                total = figures
            elif row["Name"] in KINDS:
                kinds[row["Name"]] = figures
    return {"kinds": kinds, "total": total}


def run_locust(mode: str, args, url: str, plan_path: Path, tmp: Path, cpu_of: dict, database: str) -> dict:
    request_log = tmp / f"requests-{mode}.json"
    env = {**os.environ, "BENCH_LOAD_PLAN": str(plan_path), "BENCH_LOAD_MODE": mode, "BENCH_LOAD_WARMUP": str(args.warmup),
           "BENCH_LOAD_REQUEST_LOG": str(request_log)}
    prefix = tmp / mode
    locust = subprocess.Popen(
        [str(BIN / "locust"), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless", "--host", url,
         "-u", str(args.users), "-r", str(args.users), "-t", f"{args.warmup + args.duration}s",
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5"],
        cwd=ROOT / "bench", env=env, stdout=(tmp / f"locust-{mode}.log").open("w"), stderr=subprocess.STDOUT,
    )
    time.sleep(args.warmup)
    measured_from = time.time()
    with BackendCpu(database) as backends, BackendCpu(None) as server:
        before = {name: tree_cpu(pid) for name, pid in cpu_of.items()} | {"load generator (locust)": tree_cpu(locust.pid)}
        started = time.monotonic()
        locust.wait(timeout=args.duration + 120)
        # locust has exited: its CPU is read from the rusage of its children, here by the
        # last sample taken just before (close enough over the whole window).
        seconds = time.monotonic() - started
        after = {name: tree_cpu(pid) for name, pid in cpu_of.items()}
    locust_cpu = locust_cpu_seconds(tmp / f"locust-{mode}.log") or 0.0
    cpu = {name: round(after[name] - before[name], 1) for name in cpu_of}
    cpu["PostgreSQL"] = round(backends.seconds, 1)
    # Autovacuum, the checkpointer and the WAL writer: the server's own work for these writes.
    cpu["PostgreSQL maintenance"] = round(max(0.0, server.seconds - backends.seconds), 1)
    cpu["load generator (locust)"] = round(max(0.0, locust_cpu - before["load generator (locust)"]), 1)
    stats = read_stats(Path(f"{prefix}_stats.csv"))
    stats["cpu_seconds"] = cpu
    stats["window_seconds"] = round(seconds, 1)
    stats["during_syncs"] = split_by_syncs(request_log, tmp / "sync.log", measured_from)
    stats["cpu_share"] = {name: round(value / max(seconds, 1e-9) / (os.cpu_count() or 1), 3) for name, value in cpu.items()}
    return stats


def split_by_syncs(request_log: Path, sync_log: Path, measured_from: float) -> dict:
    """p95 of the measured requests that overlapped an incremental sync, and of the others."""
    if not request_log.exists():
        return {}
    syncs = [json.loads(line) for line in sync_log.read_text().splitlines() if line.startswith("{")]
    windows = [(s["began_at"], s["ended_at"]) for s in syncs if "began_at" in s]
    during, outside = [], []
    by_kind: dict[str, tuple[list[float], list[float]]] = {}
    for start, kind, ms in json.loads(request_log.read_text()):
        if start < measured_from:
            continue
        end = start + ms / 1000
        overlaps = any(lo < end and start < hi for lo, hi in windows)
        (during if overlaps else outside).append(ms)
        by_kind.setdefault(kind, ([], []))[0 if overlaps else 1].append(ms)

    def p95(values: list[float]) -> float | None:
        return round(percentile(values, 0.95), 1) if values else None

    total = len(during) + len(outside)
    return {"requests_during_syncs": len(during), "share_during_syncs": round(len(during) / total, 3) if total else None,
            "p95_ms_during_syncs": p95(during), "p95_ms_outside_syncs": p95(outside),
            "p95_ms_per_kind": {kind: {"during_syncs": p95(d), "outside_syncs": p95(o)}
                                for kind, (d, o) in sorted(by_kind.items())}}


def locust_cpu_seconds(log: Path) -> float | None:
    """The CPU seconds locust reported about itself at exit (see the locustfile), if any."""
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("BENCH_LOCUST_CPU "):
            return float(line.split()[1])
    return None


def sync_loop(interval: float) -> None:
    """Child process: an incremental sync of every active flow definition every `interval` seconds."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from loops.models import FlowDefinition
    from loops.services.sync import sync_flow_definition

    while True:
        started = time.monotonic()
        for fd_id in FlowDefinition.objects.filter(deleted_upstream=False).values_list("id", flat=True):
            began = time.time()
            run = sync_flow_definition(fd_id, full=False)
            print(json.dumps({"fd": fd_id, "outcome": run.outcome, "seen": run.loops_seen, "updated": run.updated,
                              "created": run.created, "seconds": round(time.monotonic() - started, 2),
                              "began_at": began, "ended_at": time.time()}), flush=True)
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=1_000_000)
    parser.add_argument("--flow-definitions", type=int, default=10)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=int, default=60, help="measured seconds per mode")
    parser.add_argument("--warmup", type=int, default=20, help="seconds before the statistics restart")
    parser.add_argument("--sync-interval", type=float, default=30)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_LOAD_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--quick", action="store_true", help="50,000 loops, 15 s per mode after 10 s of warm-up")
    parser.add_argument("--sync-loop", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sync_loop:
        sync_loop(args.sync_loop)
        return {}
    if args.quick:
        args.loops, args.duration, args.warmup = 50_000, 15, 10

    database = args.database_url.rsplit("/", 1)[1]
    ensure_database(args.database_url)
    empty_database(args.database_url)
    result: dict = {
        "benchmark": "load", "loops": args.loops, "flow_definitions": args.flow_definitions, "users": args.users,
        "duration_seconds": args.duration, "warmup_seconds": args.warmup, "sync_interval_seconds": args.sync_interval,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
        "server": "gunicorn --config dashboard/gunicorn.conf.py (as make run), DEBUG off, access log off",
    }
    processes = Processes()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            store = tmp / "a2i.sqlite3"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "a2i_local", "seed", "--db", str(store), "--flow-definitions",
                            str(args.flow_definitions), "--loops", str(args.loops), "--random-seed", "1"],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            result["seed_seconds"] = round(time.perf_counter() - t0, 1)
            s3_port, a2i_port, web_port = free_port(), free_port(), free_port()
            s3 = processes.start([*NICE, str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], dict(os.environ),
                                 tmp / "s3.log")
            wait_for_port(s3_port, s3)
            a2i = processes.start(
                [*NICE, sys.executable, "-m", "a2i_local", "serve", "--port", str(a2i_port), "--db", str(store), "--workforce",
                 "--workforce-start-rate", "2", "--s3-endpoint", f"http://127.0.0.1:{s3_port}", "--log-level", "WARNING"],
                dict(os.environ), tmp / "a2i.log",
            )
            wait_for_port(a2i_port, a2i)
            env = app_env(args.database_url, f"http://127.0.0.1:{a2i_port}", f"http://127.0.0.1:{s3_port}")

            print(f"full sync of {args.loops:,} loops into {database}...", flush=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "manage.py", "sync_loops", "--full"], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
            result["initial_full_sync_seconds"] = round(time.perf_counter() - t0, 1)
            # The clean-up after a first sync of a million loops (autovacuum's insert-triggered
            # VACUUM, which sets the visibility map the overview's index-only scans rely on) is
            # done once, now, rather than left to land in one of the measured windows.
            t0 = time.perf_counter()
            vacuum(args.database_url)
            result["vacuum_after_full_sync_seconds"] = round(time.perf_counter() - t0, 1)
            subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
            plan_path = tmp / "plan.json"
            prepare_plan(args.database_url, args.users, plan_path)

            web = processes.start(
                [str(BIN / "gunicorn"), "--config", str(ROOT / "dashboard" / "gunicorn.conf.py"),
                 "--bind", f"127.0.0.1:{web_port}", "--access-logfile", "/dev/null", "dashboard.wsgi"],
                env, tmp / "web.log",
            )
            wait_for_port(web_port, web)
            sync = processes.start([*NICE, sys.executable, "-m", "bench.load", "--sync-loop", str(args.sync_interval)], env,
                                   tmp / "sync.log")
            cpu_of = {"web (gunicorn)": web.pid, "sync": sync.pid, "A2I Local": a2i.pid, "S3 (moto)": s3.pid}
            url = f"http://127.0.0.1:{web_port}"
            result["modes"] = {}
            for mode in ("steady", "saturation"):
                figures = run_locust(mode, args, url, plan_path, tmp, cpu_of, database)
                result["modes"][mode] = figures
                report(mode, figures)
            result["incremental_syncs"] = [json.loads(line) for line in (tmp / "sync.log").read_text().splitlines()
                                           if line.startswith("{")]
        finally:
            processes.stop_all()
            logs = RESULTS.parent / "load-logs"
            logs.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                (logs / log.name).write_text(log.read_text()[-200_000:])
            for requests in tmp.glob("requests-*.json"):  # every request's start, kind and time
                (logs / requests.name).write_text(requests.read_text())
    steady, saturation = result["modes"]["steady"], result["modes"]["saturation"]
    result["targets"] = {
        "steady_p95_ms_per_kind": {kind: f["p95_ms"] for kind, f in steady["kinds"].items()},
        "steady_meets_p95": all((f["p95_ms"] or 0) <= TARGET_P95_MS for f in steady["kinds"].values()),
        "steady_errors": steady["total"].get("failures", 0),
        "saturation_requests_per_second": saturation["total"].get("requests_per_second"),
        "saturation_meets_target": (saturation["total"].get("requests_per_second") or 0) >= TARGET_SATURATION_RPS,
    }
    result["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return result


def report(mode: str, figures: dict) -> None:
    total = figures["total"]
    print(f"{mode}: {total.get('requests_per_second', 0):.1f} requests/s, {total.get('failures', 0)} failures, "
          f"p95 {total.get('p95_ms', 0):.0f} ms overall", flush=True)
    for kind, f in figures["kinds"].items():
        print(f"  {kind:<18} {f['requests']:>6} requests  p50 {f['p50_ms'] or 0:5.0f} ms  p95 {f['p95_ms'] or 0:5.0f} ms  "
              f"failures {f['failures']}", flush=True)
    split = ", ".join(f"{name} {seconds} s ({figures['cpu_share'][name]:.0%})" for name, seconds in figures["cpu_seconds"].items())
    print(f"  CPU over {figures['window_seconds']} s: {split}", flush=True)
    syncs = figures.get("during_syncs") or {}
    if syncs.get("share_during_syncs") is not None:
        print(f"  requests overlapping an incremental sync: {syncs['share_during_syncs']:.0%}, p95 "
              f"{syncs['p95_ms_during_syncs']} ms; the others p95 {syncs['p95_ms_outside_syncs']} ms", flush=True)
        kinds = ", ".join(f"{kind} {f['during_syncs']}/{f['outside_syncs']}" for kind, f in syncs["p95_ms_per_kind"].items())
        print(f"  p95 ms during/outside syncs: {kinds}", flush=True)


if __name__ == "__main__":
    random.seed(1)
    main()
