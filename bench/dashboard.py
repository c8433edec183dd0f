"""Benchmark the dashboard pages on a big PostgreSQL database.

Fills the PostgreSQL database `bench_dash` (created and migrated here) with N loops
(default 1,000,000) across 10 flow definitions, server-side (`INSERT ... SELECT
generate_series`): creation times spread over 30 days, a realistic status mix
(InProgress only in the last day), failure codes, 1 % deleted upstream, and a
status-history row (InProgress -> Completed) per completed loop. Then VACUUM ANALYZE
and refresh every flow definition's stats (timed: that is what the sync does after
every run).

Then, over R sequential requests each (default 200, after 10 warm-up requests), it
reports p50/p95/max latency of:

- the loop list, unfiltered first page        (target p95 <= 50 ms)
- flow definition + status + 7-day window     (target p95 <= 50 ms)
- a deep page (page 500)                       (target p95 <= 50 ms)
- the overview                                 (target p95 <= 100 ms)

and an export of 100,000 rows (one flow definition) as CSV, streamed: rows/s and the
peak Python memory (tracemalloc) beside that of a 10x smaller export, to show it is flat.

"Loop list rows": the CPU time of the first page's 50 rows rendered by LoopRowRenderer
(what the loop list uses) beside django-tables2's own per-cell rendering of the same cells.

Requests go through Django's test Client in-process with a logged-in user (with the
stop/delete permissions, so the checkbox column and bulk bar render too): the whole
Django stack (middleware, sessions, auth, view, ORM, templates) but no HTTP server.
The database is reused when it already holds N loops (--refill to rebuild).

Usage: python -m bench.dashboard [--loops N] [--requests R] [--export-rows E] [--refill] [--quick]
Prints a summary and writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

from bench.common import ensure_database, operator_user, percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "dashboard.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_dash"
FLOW_DEFINITIONS = 10
ACCOUNT = "123456789012"
TARGETS_MS = {"list_first_page": 50, "list_fd_status_7d": 50, "list_deep_page": 50, "overview": 100}


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    django.setup()
    # DEBUG would log every query in memory (and slow each one); production runs without it.
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def fill(loops: int) -> dict:
    """Empty the tables and insert FLOW_DEFINITIONS flow definitions and `loops` loops server-side."""
    from django.db import connection
    from django.utils import timezone

    from loops.models import FlowDefinition

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE loops_humanloopstatuschange, loops_loopaction, loops_loopactionbatch, loops_humanloop, "
            "loops_syncrun, loops_workerheartbeat, loops_flowdefinition RESTART IDENTITY CASCADE"
        )
    now = timezone.now()
    fds = [
        FlowDefinition.objects.create(
            arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/bench-fd-{i}",
            name=f"bench-fd-{i}",
            region="us-east-1",
            status="Active",
            creation_time=now - timezone.timedelta(days=90),
            output_s3_path=f"s3://bench-output/fd-{i}",
            task_title=f"Bench task {i}",
            task_count=1,
            task_availability_lifetime_seconds=86400,
            task_time_limit_seconds=3600,
            last_sync_succeeded_at=now,
        )
        for i in range(FLOW_DEFINITIONS)
    ]
    first_id = fds[0].pk
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        # One pass: random creation time over 30 days, status by age (nothing older than
        # a day is still InProgress: the lifetime is 1 day), inserted in creation order
        # like the sync does, so ids grow with creation time.
        cursor.execute(
            f"""
            INSERT INTO loops_humanloop (flow_definition_id, name, arn, status, creation_time, failure_code,
                failure_reason, output_s3_uri, first_seen_at, last_seen_at, status_changed_at,
                deleted_upstream, deleted_upstream_at)
            SELECT {first_id} + (g %% {FLOW_DEFINITIONS}),
                   'loop-' || g,
                   'arn:aws:sagemaker:us-east-1:{ACCOUNT}:human-loop/loop-' || g,
                   st,
                   created,
                   CASE WHEN st = 'Failed' THEN (CASE WHEN r2 < 0.6 THEN 'Expired' WHEN r2 < 0.85 THEN 'InternalError'
                                                      ELSE 'ValidationError' END) ELSE '' END,
                   CASE WHEN st = 'Failed' THEN 'The human loop failed: ' || g ELSE '' END,
                   's3://bench-output/fd-' || (g %% {FLOW_DEFINITIONS}) || '/' || to_char(created, 'YYYY/MM/DD/HH24/MI/SS')
                       || '/loop-' || g || '/output.json',
                   created, created, created,
                   r3 < 0.01,
                   CASE WHEN r3 < 0.01 THEN created + interval '1 day' END
            FROM (
                SELECT g, created, r2, r3,
                       CASE WHEN created > now() - interval '1 day' AND r < 0.35 THEN 'InProgress'
                            WHEN r < 0.84 THEN 'Completed'
                            WHEN r < 0.92 THEN 'Failed'
                            WHEN r < 0.995 THEN 'Stopped'
                            ELSE 'Stopping' END AS st
                FROM (
                    SELECT g, now() - random() * interval '30 days' AS created, random() AS r, random() AS r2, random() AS r3
                    FROM generate_series(1, %s) AS g
                ) AS raw
            ) AS s
            ORDER BY created
            """,
            [loops],
        )
        # The observed completion of each completed loop: review time ~ exponential, mean 15 min.
        cursor.execute(
            """
            INSERT INTO loops_humanloopstatuschange (loop_id, from_status, to_status, observed_at)
            SELECT id, 'InProgress', 'Completed', creation_time + (-ln(1 - random()) * 900) * interval '1 second'
            FROM loops_humanloop WHERE status = 'Completed'
            """
        )
    insert_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"insert_seconds": round(insert_seconds, 1), "total_seconds": round(time.perf_counter() - started, 1)}


def refresh_stats() -> dict:
    from loops.models import FlowDefinition
    from loops.services.stats import refresh_flow_definition_stats

    seconds = []
    for fd in FlowDefinition.objects.order_by("pk"):
        started = time.perf_counter()
        refresh_flow_definition_stats(fd)
        seconds.append(time.perf_counter() - started)
    return {"per_flow_definition_max_s": round(max(seconds), 3), "per_flow_definition_mean_s": round(statistics.mean(seconds), 3)}


def logged_in_client():
    from django.test import Client

    client = Client()
    client.force_login(operator_user("bench"))
    return client


def time_requests(client, url: str, requests: int) -> dict:
    for _ in range(10):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    samples, cpu = [], []
    for _ in range(requests):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {
        "url": url,
        "requests": requests,
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "max_ms": round(max(samples), 1),
        # This process's CPU per request (Django side, PostgreSQL excluded): less sensitive
        # to other load on the machine than the wall-clock figures above.
        "django_cpu_p50_ms": round(statistics.median(cpu), 1),
    }


def _consume(client, url: str) -> tuple[int, int]:
    response = client.get(url)
    assert response.status_code == 200 and response.streaming, url
    size = lines = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
    return size, lines - 1  # minus the CSV header


def measure_export(client, url: str) -> dict:
    """Consume a streamed export chunk by chunk: once for speed, once under tracemalloc
    for the peak Python memory while streaming (tracemalloc slows it several times)."""
    started = time.perf_counter()
    size, rows = _consume(client, url)
    seconds = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    _consume(client, url)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "url": url,
        "rows": rows,
        "bytes": size,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds) if seconds else None,
        "peak_traced_mb": round(peak / 1e6, 2),
    }


def measure_rows(repeat: int) -> dict:
    """"Loop list rows": the first page's 50 rows rendered by LoopRowRenderer (what the loop
    list uses) and by django-tables2's per-cell machinery (its table template's body loop:
    BoundRow.items, render_* methods resolved per cell, per-column td attributes), with the
    same cell HTML. CPU milliseconds per 50 rows, best of `repeat` rounds of 20."""
    from django.template import Context, Template
    from django.utils.safestring import mark_safe

    from loops.models import FlowDefinition, HumanLoop
    from loops.tables import LoopRowRenderer, LoopTable
    from loops.views.loop_list import LIST_COLUMNS, PER_PAGE

    fds = {fd.pk: fd for fd in FlowDefinition.objects.only("pk", "arn", "name", "region")}
    records = list(HumanLoop.objects.filter(deleted_upstream=False).only(*LIST_COLUMNS).order_by("-creation_time", "-id")[:PER_PAGE])

    class PerCellLoopTable(LoopTable):
        """The same cells, each through django-tables2's own per-cell rendering."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cells = LoopRowRenderer([], self.flow_definitions)

        def render_select(self, record):
            return mark_safe(self.cells.cell_select(record))

        def render_name(self, record):
            return mark_safe(self.cells.cell_name(record))

        def render_flow_definition(self, record):
            return mark_safe(self.cells.cell_flow_definition(record))

        def render_status(self, record):
            return mark_safe(self.cells.cell_status(record))

        def render_creation_time(self, record):
            return mark_safe(self.cells.cell_creation_time(record))

        def render_status_changed_at(self, record):
            return mark_safe(self.cells.cell_status_changed_at(record))

        def render_failure_code(self, record):
            return mark_safe(self.cells.cell_failure_code(record))

        def render_failure_reason(self, record):
            return mark_safe(self.cells.cell_failure_reason(record))

    # The body loop of django_tables2/templates/django_tables2/table.html.
    body = Template(
        "{% for row in table.paginated_rows %}<tr {{ row.attrs.as_html }}>{% for column, cell in row.items %}"
        "<td {{ column.attrs.td.as_html }}>{{ cell }}</td>{% endfor %}</tr>{% endfor %}"
    )

    def with_renderer():
        table = LoopTable(records, flow_definitions=fds)
        table.paginate(per_page=PER_PAGE)
        return table.rows_html()

    def with_django_tables2():
        table = PerCellLoopTable(records, flow_definitions=fds)
        table.paginate(per_page=PER_PAGE)
        return body.render(Context({"table": table}))

    def best(render) -> float:
        rounds = []
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(20):
                render()
            rounds.append((time.process_time() - started) / 20 * 1000)
        return round(min(rounds), 2)

    renderer_ms, tables2_ms = best(with_renderer), best(with_django_tables2)
    return {"rows": len(records), "row_renderer_ms": renderer_ms, "django_tables2_per_cell_ms": tables2_ms,
            "ratio": round(tables2_ms / renderer_ms, 1) if renderer_ms else None}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--export-rows", type=int, default=100_000, help="rows of the big export (one flow definition's loops)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DASH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--refill", action="store_true", help="rebuild the data even if the database already holds --loops loops")
    parser.add_argument("--quick", action="store_true", help="50,000 loops, 50 requests, 5,000-row export")
    args = parser.parse_args(argv)
    if args.quick:
        args.loops, args.requests, args.export_rows = 50_000, 50, 5_000

    ensure_database(args.database_url)
    setup_django(args.database_url)
    from loops.models import FlowDefinition, HumanLoop

    result: dict = {
        "benchmark": "dashboard",
        "loops": args.loops,
        "flow_definitions": FLOW_DEFINITIONS,
        "requests_per_scenario": args.requests,
        "client": "django.test.Client in-process, logged-in user with stop/delete permissions (no HTTP server)",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()},
    }
    existing = HumanLoop.objects.count()
    if args.refill or existing != args.loops or FlowDefinition.objects.count() != FLOW_DEFINITIONS:
        print(f"filling {args.database_url.rsplit('/', 1)[1]} with {args.loops:,} loops...", flush=True)
        result["fill"] = fill(args.loops)
        print(f"  filled in {result['fill']['total_seconds']} s", flush=True)
    else:
        print(f"reusing {existing:,} loops already in the database", flush=True)
    result["stats_refresh"] = refresh_stats()
    print(f"stats refresh per flow definition: max {result['stats_refresh']['per_flow_definition_max_s']} s", flush=True)

    client = logged_in_client()
    fd = FlowDefinition.objects.order_by("pk")[3]
    scenarios = {
        "list_first_page": "/loops/",
        "list_fd_status_7d": f"/loops/?flow_definition={fd.arn}&status=Completed&window=7d",
        "list_deep_page": "/loops/?page=500",
        "overview": "/",
    }
    result["pages"] = {}
    for name, url in scenarios.items():
        figures = time_requests(client, url, args.requests)
        figures["target_p95_ms"] = TARGETS_MS[name]
        figures["meets_target"] = figures["p95_ms"] <= TARGETS_MS[name]
        result["pages"][name] = figures
        print(f"{name:<20} p50 {figures['p50_ms']:6.1f} ms  p95 {figures['p95_ms']:6.1f} ms  max {figures['max_ms']:6.1f} ms"
              f"  (Django CPU p50 {figures['django_cpu_p50_ms']:5.1f} ms)"
              f"  (target p95 <= {TARGETS_MS[name]} ms: {'ok' if figures['meets_target'] else 'MISSED'})", flush=True)

    rows = measure_rows(repeat=3 if args.quick else 10)
    result["loop_list_rows"] = rows
    print(f"loop list rows ({rows['rows']}): LoopRowRenderer {rows['row_renderer_ms']} ms, django-tables2 per cell "
          f"{rows['django_tables2_per_cell_ms']} ms ({rows['ratio']}x), CPU per page", flush=True)

    # One flow definition holds loops/10 loops: with the default sizes, exactly 100,000.
    fd_rows = HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False).count()
    big_url = f"/loops/?flow_definition={fd.arn}&_export=csv"
    if fd_rows < args.export_rows * 0.9:
        big_url = "/loops/?_export=csv"  # small fills: take everything
    small_url = f"/loops/?flow_definition={fd.arn}&status=Failed&_export=csv"
    big = measure_export(client, big_url)
    small = measure_export(client, small_url)
    result["export"] = {
        "big": big,
        "small": small,
        "peak_ratio_big_to_small": round(big["peak_traced_mb"] / small["peak_traced_mb"], 2) if small["peak_traced_mb"] else None,
        "streamed": True,
    }
    print(f"export {big['rows']:,} rows: {big['seconds']} s ({big['rows_per_second']:,} rows/s), peak {big['peak_traced_mb']} MB traced;"
          f" {small['rows']:,} rows: peak {small['peak_traced_mb']} MB (flat when these are close)", flush=True)

    result["machine"]["load_average_at_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return result


if __name__ == "__main__":
    main()
