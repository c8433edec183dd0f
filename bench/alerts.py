"""Benchmark the alert evaluation and /metrics on a big PostgreSQL database.

Fills the PostgreSQL database `bench_alerts` (created and migrated here) with N loops
(default 1,000,000) across 50 flow definitions, server-side (`INSERT ... SELECT
generate_series`): creation times over 30 days, a realistic status mix (InProgress only in
the last day, a day's lifetime, so some are close to expiry), a few Stopping loops, an
observed transition per ended loop (the last hour's feed the failure-rate rules), and
100,000 sync runs (the counters' source). Then VACUUM ANALYZE, refreshes every flow
definition's statistics, and creates 20 rules: every kind, over every flow definition and
for single flow definitions.

It reports:

- one evaluation tick of the 20 rules (`services.alerts.evaluate_rules`), T ticks after a
  warm-up: p50 and max wall time (target <= 1 s per tick);
- `GET /metrics` through Django's test Client (the whole Django stack, no HTTP server),
  R requests after 10 warm-ups, with the counters' rollup as the tick leaves it:
  p50/p95/max (target p95 <= 50 ms).

Usage: python -m bench.alerts [--loops N] [--ticks T] [--requests R] [--refill] [--quick]
Prints a summary and writes bench/results/alerts.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from bench.common import ensure_database, percentile
from bench.dashboard import setup_django

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "alerts.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_alerts"
FLOW_DEFINITIONS = 50
SYNC_RUNS = 100_000
ACCOUNT = "123456789012"
TARGET_TICK_S = 1.0
TARGET_METRICS_P95_MS = 50


def fill(loops: int, sync_runs: int) -> dict:
    """Empty the tables and insert the flow definitions, loops, transitions and sync runs server-side."""
    from django.db import connection
    from django.utils import timezone

    from loops.models import FlowDefinition

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'loops\\_%'")
        tables = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    now = timezone.now()
    fds = [
        FlowDefinition.objects.create(
            arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/bench-fd-{i}",
            name=f"bench-fd-{i}", region="us-east-1", status="Active", creation_time=now - timezone.timedelta(days=90),
            task_count=1, task_availability_lifetime_seconds=86400, task_time_limit_seconds=3600,
            last_sync_succeeded_at=now,
        )
        for i in range(FLOW_DEFINITIONS)
    ]
    first_id = fds[0].pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            f"""
            INSERT INTO loops_humanloop (flow_definition_id, name, arn, status, creation_time, failure_code,
                failure_reason, output_s3_uri, first_seen_at, last_seen_at, status_changed_at,
                deleted_upstream, deleted_upstream_at)
            SELECT {first_id} + (g %% {FLOW_DEFINITIONS}), 'loop-' || g,
                   'arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-loop/loop-' || g, st, created,
                   CASE WHEN st = 'Failed' THEN (CASE WHEN r2 < 0.6 THEN 'Expired' ELSE 'InternalError' END) ELSE '' END,
                   '', '', created, created,
                   CASE WHEN st IN ('InProgress', 'Stopping') THEN created ELSE created + interval '15 minutes' END,
                   r3 < 0.01, CASE WHEN r3 < 0.01 THEN created + interval '1 day' END
            FROM (
                SELECT g, created, r2, r3,
                       CASE WHEN created > now() - interval '1 day' AND r < 0.35 THEN 'InProgress'
                            WHEN r < 0.84 THEN 'Completed' WHEN r < 0.92 THEN 'Failed'
                            WHEN r < 0.995 THEN 'Stopped' ELSE 'Stopping' END AS st
                FROM (SELECT g, now() - random() * interval '30 days' AS created, random() AS r, random() AS r2,
                             random() AS r3 FROM generate_series(1, %s) AS g) AS raw
            ) AS s
            ORDER BY created
            """,
            [loops],
        )
        # The observed end of each ended loop, 15 minutes after its creation.
        cursor.execute(
            """
            INSERT INTO loops_humanloopstatuschange (loop_id, from_status, to_status, observed_at)
            SELECT id, 'InProgress', status, creation_time + interval '15 minutes'
            FROM loops_humanloop WHERE status IN ('Completed', 'Failed')
            """
        )
        cursor.execute(
            f"""
            INSERT INTO loops_syncrun (flow_definition_id, region, kind, started_at, finished_at, pages, loops_seen,
                created, updated, marked_deleted, outcome, error)
            SELECT {first_id} + (g %% {FLOW_DEFINITIONS}), 'us-east-1', 'incremental',
                   now() - g * interval '1 second', now() - g * interval '1 second' + interval '1 second',
                   1, 10, 0, 1, 0, CASE WHEN g %% 50 = 0 THEN 'failed' ELSE 'succeeded' END, ''
            FROM generate_series(1, %s) AS g
            """,
            [sync_runs],
        )
        cursor.execute("INSERT INTO loops_workerheartbeat (worker, last_beat_at) VALUES ('celery@bench', now())")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"seconds": round(time.perf_counter() - started, 1)}


def create_rules() -> int:
    """20 rules: each kind over every flow definition, plus per-flow-definition ones."""
    from loops.models import AlertRule, FlowDefinition

    AlertRule.objects.all().delete()
    fds = list(FlowDefinition.objects.order_by("pk")[:8])
    specs = [
        ("expiring", None, {}), ("stuck_stopping", None, {}), ("failure_rate", None, {}), ("backlog", None, {"count": 500}),
        ("review_time", None, {"minutes": 10}), ("sync_stale", None, {}), ("failure_rate", None, {"failure_code": "Expired"}),
        ("expiring", None, {"share": 0.5, "count": 10}), ("failure_rate", None, {"window_minutes": 1440}),
        ("stuck_stopping", None, {"minutes": 60}), ("backlog", None, {"count": 50}), ("sync_stale", None, {"minutes": 30}),
    ]
    specs += [(kind, fd, {}) for kind, fd in zip(
        ["expiring", "failure_rate", "stuck_stopping", "backlog", "review_time", "sync_stale", "expiring", "failure_rate"], fds,
        strict=True,
    )]
    for i, (kind, fd, params) in enumerate(specs):
        AlertRule.objects.create(name=f"bench {i} {kind}", kind=kind, flow_definition=fd, **params)
    return len(specs)


def time_ticks(ticks: int) -> dict:
    from loops.services import metrics
    from loops.services.alerts import evaluate_rules

    evaluate_rules()  # warm-up: states created, caches filled
    seconds, changes = [], 0
    for _ in range(ticks):
        started = time.perf_counter()
        tick = evaluate_rules()
        seconds.append(time.perf_counter() - started)
        changes += len(tick.transitions)
    started = time.perf_counter()
    metrics.roll_up_counters()
    rollup = time.perf_counter() - started
    return {"ticks": ticks, "rules_evaluated": tick.evaluated, "p50_s": round(statistics.median(seconds), 3),
            "max_s": round(max(seconds), 3), "transitions_after_warm_up": changes, "rollup_s": round(rollup, 3),
            "target_s": TARGET_TICK_S, "meets_target": max(seconds) <= TARGET_TICK_S}


def time_metrics(requests: int) -> dict:
    from django.conf import settings
    from django.test import Client

    settings.A2I_METRICS_ALLOW = ["127.0.0.1"]
    client = Client()
    for _ in range(10):
        assert client.get("/metrics").status_code == 200
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get("/metrics")
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    p95 = percentile(samples, 0.95)
    return {"requests": requests, "bytes": len(response.content), "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(p95, 1), "max_ms": round(max(samples), 1), "target_p95_ms": TARGET_METRICS_P95_MS,
            "meets_target": p95 <= TARGET_METRICS_P95_MS}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.alerts", description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_ALERTS_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--refill", action="store_true", help="rebuild the data even if the database already holds --loops loops")
    parser.add_argument("--quick", action="store_true", help="50,000 loops, 5 ticks, 50 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.loops, args.ticks, args.requests = 50_000, 5, 50

    ensure_database(args.database_url)
    setup_django(args.database_url)
    from loops.models import FlowDefinition, HumanLoop
    from loops.services.stats import refresh_flow_definition_stats

    result: dict = {
        "benchmark": "alerts", "loops": args.loops, "flow_definitions": FLOW_DEFINITIONS,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
    }
    if args.refill or HumanLoop.objects.count() != args.loops or FlowDefinition.objects.count() != FLOW_DEFINITIONS:
        print(f"filling {args.database_url.rsplit('/', 1)[1]} with {args.loops:,} loops...", flush=True)
        result["fill"] = fill(args.loops, SYNC_RUNS if not args.quick else 10_000)
        for fd in FlowDefinition.objects.all():
            refresh_flow_definition_stats(fd)
        print(f"  filled in {result['fill']['seconds']} s", flush=True)
    else:
        print(f"reusing {args.loops:,} loops already in the database", flush=True)
    result["rules"] = create_rules()

    result["evaluation"] = tick = time_ticks(args.ticks)
    print(f"evaluation of {result['rules']} rules: p50 {tick['p50_s']} s, max {tick['max_s']} s per tick "
          f"(target <= {TARGET_TICK_S} s: {'ok' if tick['meets_target'] else 'MISSED'}); counters' rollup {tick['rollup_s']} s",
          flush=True)
    result["metrics"] = scrape = time_metrics(args.requests)
    print(f"/metrics ({scrape['bytes']:,} bytes): p50 {scrape['p50_ms']} ms, p95 {scrape['p95_ms']} ms, max {scrape['max_ms']} ms "
          f"(target p95 <= {TARGET_METRICS_P95_MS} ms: {'ok' if scrape['meets_target'] else 'MISSED'})", flush=True)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
