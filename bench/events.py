"""Benchmark A2I's events: freshness, apply throughput, the SQS consumer, history rows per change.

Four measurements, into PostgreSQL, with A2I Local and moto's server (S3 and SQS) in this
process and the dashboard's own processes (gunicorn, `manage.py consume_events`) as
children, as under `make run`:

1. freshness: A2I Local completes synced InProgress loops at a steady pace (--rate per
   second); each change's event goes (a) by webhook to the endpoint under gunicorn
   (--workers 2), (b) to an SQS queue on moto's server read by consume_events. Freshness
   = when a poller (every 20 ms) first sees the loop Completed in the database, minus the
   moment A2I Local committed the completion (its store listener), same clock.
   Targets over >= 500 changes: p95 <= 1 s (HTTPS), <= 2 s (SQS). Also the endpoint's own
   answer time, single events POSTed one after another on a kept-alive connection:
   p95 <= 20 ms.
2. apply throughput: parse_message + apply_events in batches of 10, in this one process,
   over events that complete stored InProgress loops: events/s (target >= 2,000).
3. SQS consumer vs a bare loop: the same moto queue, filled with the same number of event
   messages (kept shallow: moto's SQS slows as a queue deepens), drained once by the
   consumer's own steps (receive, parse, apply in one transaction, delete) and once by a
   bare receive-and-delete loop through the same client, alternately: messages/s each,
   their ratio (target >= 0.8), and moto's send rate beside them.
4. history rows: a stream of events (one real change per loop, redeliveries of the same
   id, second ids for the same change, stale events of an earlier loop of the same name,
   out of order) applied in batches of 10: history rows written per real change
   (target exactly 1), and the results counted.

The Celery broker is kombu's in-memory transport in every process: applied events queue
one debounced stats refresh per flow definition and 5 s, which is not what is measured.
Uses the PostgreSQL database `events_bench` (EVENTS_BENCH_DATABASE_URL; created,
migrated, emptied here). Prints a summary and writes bench/results/events.json.
Usage: python -m bench.events [--changes N] [--rate R] [--apply-events N] [--queue-messages N]
                              [--stream-events N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import empty_database, ensure_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "events.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/events_bench"
TOKEN = secrets.token_urlsafe(32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=500, help="changes per freshness transport")
    parser.add_argument("--rate", type=float, default=20.0, help="completions per second in the freshness runs")
    parser.add_argument("--latency-requests", type=int, default=500)
    parser.add_argument("--apply-events", type=int, default=10_000)
    parser.add_argument("--queue-messages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="consumer/bare alternations")
    parser.add_argument("--stream-events", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="small sizes (100 changes, 2,000 events, 100 messages)")
    args = parser.parse_args(argv)
    if args.quick:
        args.changes, args.latency_requests, args.apply_events = 100, 100, 2_000
        args.queue_messages, args.rounds, args.stream_events = 100, 1, 2_000

    database_url = os.environ.get("EVENTS_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(database_url)
    os.environ.update(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="dashboard.settings", LOG_LEVEL="WARNING",
                      CELERY_BROKER_URL="memory://localhost/", CELERY_RESULT_BACKEND="cache+memory://", A2I_EVENTS_TOKEN=TOKEN)
    import django

    django.setup()
    from a2i_local.testing import a2i_local_server

    result = {"quick": args.quick}
    # SQS in a moto server of its own (a process, as SQS is a remote service); S3 in A2I
    # Local's, in this process.
    sqs_port = free_port()
    moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(sqs_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(sqs_port, "/moto-api/")
        with a2i_local_server(stop_delay_seconds=0) as a2i:
            for key in [k for k in os.environ if k.startswith("AWS_")]:
                del os.environ[key]
            a2i.sqs_url = f"http://127.0.0.1:{sqs_port}"
            os.environ.update(a2i.environ(credentials="bench"), AWS_ENDPOINT_URL_SQS=a2i.sqs_url, A2I_REGIONS=a2i.region)
            from loops import a2i as a2i_api

            a2i_api.reset_clients()
            result["freshness_https"] = freshness_https(a2i, args, database_url)
            result["freshness_sqs"] = freshness_sqs(a2i, args, database_url)
            result["apply"] = apply_throughput(args)
            result["consumer"] = consumer_vs_bare(a2i, args)
            result["history"] = history_per_change(args)
    finally:
        stop(moto)

    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(summary(result))
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


# --- helpers ----------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    return {"n": len(ordered), "p50": round(at(0.5), 4), "p95": round(at(0.95), 4), "max": round(ordered[-1], 4)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(database_url: str) -> dict:
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url, DEBUG="false", SECRET_KEY="benchmark-only-" + "x" * 40,
               ALLOWED_HOSTS="127.0.0.1", SECURE_SSL_REDIRECT="false", SECURE_COOKIES="false", DB_CONN_MAX_AGE="600",
               LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    return env


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def fresh_world(a2i, name: str, count: int):
    """Empty database and A2I Local `a2i`; one flow definition with `count` InProgress loops,
    synced from `a2i` (this process's boto3 is pointed at it)."""
    from loops import a2i as a2i_api
    from loops.models import FlowDefinition
    from loops.services.discovery import discover_flow_definitions
    from loops.services.sync import sync_flow_definition

    empty_database(os.environ["DATABASE_URL"])
    a2i.control("POST", "/_local/reset")  # not moto's: the queues live there
    os.environ.update(a2i.environ(credentials="bench"))
    a2i_api.reset_clients()
    arn = a2i.create_flow_definition(name)
    names = [f"{name}-{i}" for i in range(count)]
    for loop_name in names:
        a2i.store.start_human_loop(loop_name, arn, "{}")
    discover_flow_definitions([a2i.region])
    fd = FlowDefinition.objects.get(arn=arn)
    sync_flow_definition(fd.pk, full=True)
    return fd, names


POLL_SECONDS = 0.02


def measure_freshness(server_a2i, names: list[str], rate: float, timeout: float) -> dict:
    """Complete each loop at `rate` per second while a poller watches the database; returns
    the percentiles of (first seen Completed in the database - committed in A2I Local).

    The poller reads every POLL_SECONDS on a connection of its own, so a change counts once
    it is committed and visible, as for the dashboard's pages; it adds at most that much.
    """
    from django.db import connection

    from loops.models import HumanLoop

    committed: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def listener(loop: dict) -> None:
        committed[loop["HumanLoopName"]] = time.time()

    def poll() -> None:
        waiting = set(names)
        try:
            while waiting and not done.is_set():
                found = HumanLoop.objects.filter(name__in=waiting, status="Completed").values_list("name", flat=True)
                now = time.time()
                for name in found:
                    seen[name] = now
                waiting -= seen.keys()
                time.sleep(POLL_SECONDS)
        finally:
            connection.close()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    server_a2i.store.subscribe(listener)
    try:
        started = time.monotonic()
        for i, name in enumerate(names):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            server_a2i.store.complete_loop(name, {"label": "ok"}, worker_id="bench")
        poller.join(timeout)
    finally:
        done.set()
        server_a2i.store.unsubscribe(listener)
    if len(seen) < len(names):
        raise SystemExit(f"only {len(seen)} of {len(names)} events were applied within {timeout:.0f} s")
    return percentiles([seen[name] - committed[name] for name in names])


# --- 1. freshness ---------------------------------------------------------------------------


def freshness_https(a2i, args, database_url: str) -> dict:
    from a2i_local.testing import a2i_local_server

    port = free_port()
    url = f"http://127.0.0.1:{port}/events/eventbridge/"
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "dashboard.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=ROOT, env=child_env(database_url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_listening(port)
        latency = endpoint_latency(a2i, url, args.latency_requests)
        with a2i_local_server(s3_endpoint=a2i.s3_url, event_webhook=url, event_webhook_token=TOKEN,
                              stop_delay_seconds=0) as source:
            fd, names = fresh_world(source, "fresh-https", args.changes)
            freshness = measure_freshness(source, names, args.rate, 60)
        return {"changes": len(names), "rate_per_second": args.rate, "seconds": freshness,
                "poll_seconds": POLL_SECONDS, "endpoint_latency_seconds": latency, "gunicorn_workers": 2}
    finally:
        stop(web)


def wait_listening(port: int, path: str = "/events/eventbridge/") -> None:
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"nothing answered on port {port} within 60 s")


def endpoint_latency(a2i, url: str, count: int) -> dict:
    """Single-event POSTs, one after another on one kept-alive connection, each completing a stored loop."""
    import requests

    fd, names = fresh_world(a2i, "latency", count)
    from loops.models import HumanLoop

    created = dict(HumanLoop.objects.filter(flow_definition=fd).values_list("name", "creation_time"))
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    timings = []
    for name in names:
        body = json.dumps(event(fd.arn, name, created[name], "Completed"))
        started = time.perf_counter()
        response = http.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        timings.append(time.perf_counter() - started)
        assert response.status_code == 202, response.text
    http.close()
    return percentiles(timings)


def freshness_sqs(a2i, args, database_url: str) -> dict:
    from a2i_local.testing import a2i_local_server

    sqs = sqs_client(a2i)  # moto's own process; A2I Local takes its endpoint from the queue URL
    queue = sqs.create_queue(QueueName=f"fresh-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    consumer = subprocess.Popen([sys.executable, "manage.py", "consume_events", "--queue-url", queue],
                                cwd=ROOT, env=child_env(database_url), stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        with a2i_local_server(s3_endpoint=a2i.s3_url, event_queue_url=queue, stop_delay_seconds=0) as source:
            fd, names = fresh_world(source, "fresh-sqs", args.changes)
            freshness = measure_freshness(source, names, args.rate, 120)
        return {"changes": len(names), "rate_per_second": args.rate, "seconds": freshness, "poll_seconds": POLL_SECONDS}
    finally:
        stop(consumer)


def sqs_client(a2i):
    import boto3

    return boto3.client("sqs", endpoint_url=a2i.sqs_url, region_name=a2i.region,
                        aws_access_key_id="bench", aws_secret_access_key="bench")


# --- events built in this process ---------------------------------------------------------------


def event(fd_arn: str, name: str, created: datetime, status: str, *, event_id: str | None = None,
          at: datetime | None = None) -> dict:
    prefix = fd_arn.split(":flow-definition/")[0]
    created = created.astimezone(UTC)
    return {
        "version": "0", "id": event_id or str(uuid.uuid4()), "detail-type": "SageMaker A2I HumanLoop Status Change",
        "source": "aws.sagemaker", "account": fd_arn.split(":")[4], "region": fd_arn.split(":")[3],
        "time": (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [f"{prefix}:human-loop/{name}"],
        "detail": {
            "creationTime": created.strftime("%Y-%m-%dT%H:%M:%S.") + f"{created.microsecond // 1000:03d}Z",
            "failureCode": "InternalError" if status == "Failed" else None,
            "failureReason": "failed in the benchmark" if status == "Failed" else None,
            "flowDefinitionArn": fd_arn, "humanLoopArn": f"{prefix}:human-loop/{name}", "humanLoopName": name,
            "humanLoopOutput": {"outputS3Uri": f"s3://bench/{name}/output.json"}, "humanLoopStatus": status,
        },
    }


def stored_world(name: str, count: int):
    """One flow definition and `count` InProgress loops written straight to the database
    (with their first-sight history rows, as a sync writes them)."""
    from django.utils import timezone

    from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange

    empty_database(os.environ["DATABASE_URL"])
    now = timezone.now().replace(microsecond=0)
    fd = FlowDefinition.objects.create(arn=f"arn:aws:sagemaker:us-east-1:123456789012:flow-definition/{name}",
                                       name=name, region="us-east-1", status="Active", creation_time=now)
    prefix = f"arn:aws:sagemaker:us-east-1:123456789012:human-loop/{name}-"
    loops = HumanLoop.objects.bulk_create([
        HumanLoop(flow_definition=fd, name=f"{name}-{i}", arn=f"{prefix}{i}", status="InProgress",
                  creation_time=now - timedelta(hours=1, seconds=i), first_seen_at=now, last_seen_at=now,
                  status_changed_at=now)
        for i in range(count)
    ], batch_size=2000)
    HumanLoopStatusChange.objects.bulk_create([
        HumanLoopStatusChange(loop=loop, from_status="", to_status="InProgress", observed_at=now) for loop in loops
    ], batch_size=2000)
    return fd, [(loop.name, loop.creation_time) for loop in loops]


# --- 2. apply throughput ---------------------------------------------------------------------


def apply_throughput(args) -> dict:
    from loops.services.event_parsing import parse_message
    from loops.services.events import apply_events

    fd, loops = stored_world("apply", args.apply_events)
    rng = random.Random(1)
    bodies = [json.dumps(event(fd.arn, name, created, rng.choice(["Completed", "Completed", "Failed", "Stopped"])))
              for name, created in loops]
    started = time.perf_counter()
    results = {}
    for i in range(0, len(bodies), 10):
        report = apply_events([parse_message(body) for body in bodies[i:i + 10]], transport="sqs")
        for key, n in report.counts().items():
            results[key] = results.get(key, 0) + n
    seconds = time.perf_counter() - started
    return {"events": len(bodies), "batch": 10, "seconds": round(seconds, 3),
            "events_per_second": round(len(bodies) / seconds, 1), "results": results}


# --- 3. the SQS consumer against a bare receive-and-delete loop ------------------------------------


def consumer_vs_bare(a2i, args) -> dict:
    from loops import a2i as a2i_api
    from loops.management.commands.consume_events import QueueConsumer

    sqs = sqs_client(a2i)
    queue = sqs.create_queue(QueueName=f"drain-{uuid.uuid4().hex[:6]}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    n = args.queue_messages
    fd, loops = stored_world("drain", n * args.rounds)
    rounds = []
    for r in range(args.rounds):
        mine = loops[r * n:(r + 1) * n]
        # The bare loop drains messages that are events too, so both see the same bodies' sizes.
        send_seconds = fill(sqs, queue, [json.dumps(event(fd.arn, name, created, "Completed")) for name, created in mine])
        started = time.perf_counter()
        drained = 0
        while drained < n:
            messages = a2i_api.receive_event_messages(queue)
            a2i_api.delete_event_messages(queue, [m["ReceiptHandle"] for m in messages])
            drained += len(messages)
        bare = time.perf_counter() - started

        fill(sqs, queue, [json.dumps(event(fd.arn, name, created, "Completed")) for name, created in mine])
        consumer = QueueConsumer(queue, threading.Event())
        started = time.perf_counter()
        while sum(consumer.totals.values()) < n:
            assert consumer.step(), "a consumer step failed"
        consumer.close()  # the last delete, still in flight
        ours = time.perf_counter() - started
        rounds.append({"bare_per_second": round(n / bare, 1), "consumer_per_second": round(n / ours, 1),
                       "ratio": round(bare / ours, 3), "moto_send_per_second": round(n / send_seconds, 1),
                       "applied": consumer.totals.get("applied", 0)})
    return {"messages_per_round": n, "rounds": rounds,
            "ratio_mean": round(statistics.mean(r["ratio"] for r in rounds), 3)}


def fill(sqs, queue: str, bodies: list[str]) -> float:
    started = time.perf_counter()
    for i in range(0, len(bodies), 10):
        entries = [{"Id": str(j), "MessageBody": body} for j, body in enumerate(bodies[i:i + 10])]
        sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    return time.perf_counter() - started


# --- 4. history rows per real change ------------------------------------------------------------


def history_per_change(args) -> dict:
    from loops.models import HumanLoopStatusChange, ReceivedEvent
    from loops.services.event_parsing import parse_message
    from loops.services.events import apply_events

    rng = random.Random(2)
    # Of the stream: 70 % first deliveries of real changes, 20 % redeliveries (same id),
    # 5 % second ids for a change, 5 % stale events of an earlier loop of the same name.
    changes = int(args.stream_events * 0.7)
    fd, loops = stored_world("stream", changes)
    now = datetime.now(UTC)
    firsts = [event(fd.arn, name, created, rng.choice(["Completed", "Failed", "Stopped"]),
                    at=now - timedelta(seconds=rng.randint(0, 600))) for name, created in loops]
    stream = list(firsts)
    stream += [rng.choice(firsts) for _ in range(int(args.stream_events * 0.2))]
    for original in rng.sample(firsts, int(args.stream_events * 0.05)):
        stream.append({**original, "id": str(uuid.uuid4())})
    for name, created in rng.sample(loops, args.stream_events - len(stream)):
        stream.append(event(fd.arn, name, created - timedelta(days=1), "Completed"))
    rng.shuffle(stream)
    before = HumanLoopStatusChange.objects.count()
    bodies = [json.dumps(e) for e in stream]
    for i in range(0, len(bodies), 10):
        apply_events([parse_message(body) for body in bodies[i:i + 10]], transport="sqs")
    written = HumanLoopStatusChange.objects.count() - before
    per_loop = set(HumanLoopStatusChange.objects.filter(source="event").values_list("loop_id", flat=True))
    results = {result: ReceivedEvent.objects.filter(result=result).count() for result in ("applied", "duplicate", "stale")}
    return {"events": len(stream), "real_changes": changes, "history_rows_written": written,
            "rows_per_real_change": round(written / changes, 4), "loops_with_an_event_row": len(per_loop),
            "results": results}


def summary(result: dict) -> str:
    https, sqs = result["freshness_https"], result["freshness_sqs"]
    consumer = result["consumer"]
    lines = [
        f"freshness HTTPS: {https['changes']} changes at {https['rate_per_second']:g}/s: "
        f"p50 {https['seconds']['p50'] * 1000:.0f} ms, p95 {https['seconds']['p95'] * 1000:.0f} ms, "
        f"max {https['seconds']['max'] * 1000:.0f} ms",
        f"endpoint answer (gunicorn, single events): p50 {https['endpoint_latency_seconds']['p50'] * 1000:.1f} ms, "
        f"p95 {https['endpoint_latency_seconds']['p95'] * 1000:.1f} ms",
        f"freshness SQS: {sqs['changes']} changes: p50 {sqs['seconds']['p50'] * 1000:.0f} ms, "
        f"p95 {sqs['seconds']['p95'] * 1000:.0f} ms, max {sqs['seconds']['max'] * 1000:.0f} ms",
        f"apply: {result['apply']['events']} events in batches of 10: {result['apply']['events_per_second']:.0f} events/s",
        "consumer vs bare receive-and-delete (messages/s): " + "; ".join(
            f"{r['consumer_per_second']:.0f} vs {r['bare_per_second']:.0f} (ratio {r['ratio']:.2f}, "
            f"moto send {r['moto_send_per_second']:.0f}/s)" for r in consumer["rounds"]),
        f"history: {result['history']['events']} events, {result['history']['real_changes']} real changes, "
        f"{result['history']['history_rows_written']} rows ({result['history']['rows_per_real_change']} per change); "
        f"results {result['history']['results']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
