"""Benchmark bulk stop and delete through the action service.

A2I Local runs in this process (a server thread); loops are started through its store,
synced into PostgreSQL, then stopped and deleted with `execute_batch`, exactly as the
Celery task does. Three measurements over N loops (default 2,000):

1. bulk stop, no throttling: loops/s;
2. bulk delete of the stopped loops: loops/s;
3. bulk stop with A2I Local throttling StopHumanLoop at --throttle-tps (default 100):
   loops/s, how many loops botocore and the service's backoff carried through, and
   that none is left pending.

Uses the PostgreSQL database `actions_bench` (created, migrated, emptied here).
Prints a summary and writes bench/results/actions.json.
Usage: python -m bench.actions [--loops N] [--throttle-tps T] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.common import empty_database, ensure_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "actions.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/actions_bench"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loops", type=int, default=2000)
    parser.add_argument("--throttle-tps", type=float, default=100.0)
    parser.add_argument("--quick", action="store_true", help="300 loops")
    args = parser.parse_args(argv)
    if args.quick:
        args.loops = 300

    database_url = os.environ.get("ACTIONS_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(database_url)
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from a2i_local.testing import a2i_local_server

    with a2i_local_server(stop_delay_seconds=0) as a2i:
        for key in list(os.environ):
            if key.startswith("AWS_"):
                del os.environ[key]
        os.environ.update(a2i.environ(credentials="bench"))
        result = run(a2i, args)

    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"bulk stop:   {result['stop']['loops']} loops in {result['stop']['seconds']:.2f} s = "
        f"{result['stop']['loops_per_second']:.0f} loops/s\n"
        f"bulk delete: {result['delete']['loops']} loops in {result['delete']['seconds']:.2f} s = "
        f"{result['delete']['loops_per_second']:.0f} loops/s\n"
        f"bulk stop at {args.throttle_tps:g} TPS throttle: {result['throttled_stop']['seconds']:.2f} s = "
        f"{result['throttled_stop']['loops_per_second']:.0f} loops/s; {result['throttled_stop']['summary']}; "
        f"pending left: {result['throttled_stop']['pending']}\n"
        f"written to {RESULTS.relative_to(ROOT)}"
    )
    return 0


def run(a2i, args) -> dict:
    from django.contrib.auth.models import User

    from loops import a2i as a2i_api
    from loops.models import FlowDefinition, HumanLoop, LoopAction
    from loops.services import actions
    from loops.services.discovery import discover_flow_definitions
    from loops.services.sync import sync_flow_definition

    empty_database(os.environ["DATABASE_URL"])
    a2i_api.reset_clients()
    User.objects.filter(username="bench-operator").delete()
    user = User.objects.create_superuser("bench-operator", "bench@example.com", "bench")

    def start(count: int, prefix: str, fd_arn: str) -> None:
        for i in range(count):
            a2i.store.start_human_loop(f"{prefix}-{i}", fd_arn, f'{{"n": {i}}}')

    def timed(action: str, loops) -> dict:
        batch = actions.create_batch(user, action, "benchmark", loops)
        started = time.perf_counter()
        summary = actions.execute_batch(batch.pk)
        seconds = time.perf_counter() - started
        pending = LoopAction.objects.filter(batch=batch, outcome="pending").count()
        return {"loops": batch.total, "seconds": round(seconds, 3), "loops_per_second": round(batch.total / seconds, 1),
                "summary": summary, "pending": pending}

    arn = a2i.create_flow_definition("bench-actions")
    discover_flow_definitions([a2i.region])
    fd = FlowDefinition.objects.get(arn=arn)
    start(args.loops, "stop", arn)
    sync_flow_definition(fd.pk, full=True)

    result = {"loops": args.loops}
    result["stop"] = timed("stop", HumanLoop.objects.filter(flow_definition=fd, name__startswith="stop-"))
    # Stopping -> Stopped is learned by the next sync; only then are the loops deletable.
    sync_flow_definition(fd.pk, full=True)
    result["delete"] = timed("delete", HumanLoop.objects.filter(flow_definition=fd, name__startswith="stop-"))

    start(args.loops, "throttled", arn)
    sync_flow_definition(fd.pk, full=True)
    a2i.configure(throttle_tps=args.throttle_tps)
    result["throttled_stop"] = timed("stop", HumanLoop.objects.filter(flow_definition=fd, name__startswith="throttled-"))
    result["throttled_stop"]["throttle_tps"] = args.throttle_tps
    a2i.configure(throttle_tps=0)
    for name in ("stop", "delete", "throttled_stop"):
        # A benchmark of loops that were skipped or failed would measure nothing.
        verb = "deleted" if name == "delete" else "stopped"
        if result[name]["summary"] != f"{args.loops} {verb}":
            print(f"warning: {name}: {result[name]['summary']}", file=sys.stderr)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
