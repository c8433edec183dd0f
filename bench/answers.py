"""Benchmark reading the reviewers' answers (output.json) and the reviewers page.

Starts moto's S3 server in its own process and writes F output.json files to it (default
20,000; one to three answers each, as A2I Local's workforce makes them), then, in the
same run and against the same server, each step in a fresh child process:

1. **bare GetObject**: a boto3 loop on C threads that reads every body, nothing else
   (the rate S3 allows here);
2. **ingestion**: loops.services.answers.ingest_due_answers over F Completed loops in
   PostgreSQL, with A2I_ANSWERS_CONCURRENCY = C: files/s, its ratio to (1), and the
   child's peak RSS (target: ratio >= 0.8, peak RSS <= 200 MB);
3. **parse and write alone**: the same ingestion with the files already in memory
   (no S3): files/s into PostgreSQL (target >= 2,000/s);

then fills PostgreSQL with A answers from W workers (default 1,000,000 and 500, server-side
with generate_series), refreshes the precomputed reviewer figures (timed), and times R
requests (after 10 warm-ups) of /reviewers/ (all time, 7 days, one flow definition) and a
worker's page through Django's test Client (target: /reviewers/ p95 <= 100 ms).

Usage: python -m bench.answers [--files F] [--concurrency C] [--answers A] [--workers W] [--requests R] [--quick]
Database: BENCH_ANSWERS_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench_answers).
Prints a summary and writes bench/results/answers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import empty_database, ensure_database, percentile

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "answers.json"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/bench_answers"
BUCKET = "bench-answers"
ACCOUNT = "123456789012"
FLOW_DEFINITIONS = 10
TARGETS = {"ingest_ratio": 0.8, "ingest_peak_rss_mb": 200, "parse_write_files_per_s": 2000, "reviewers_p95_ms": 100}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_client(url: str, concurrency: int):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(concurrency, 10)),
    )


def key_of(n: int) -> str:
    return f"out/bench-fd/2026/11/26/17/00/00/bench-loop-{n}/output.json"


def write_files(url: str, files: int, concurrency: int) -> float:
    """PUT `files` output.json documents (1-3 answers each, the workforce's generator)."""
    from a2i_local.output import answer_document
    from a2i_local.workforce import make_answers

    client = s3_client(url, concurrency)
    client.create_bucket(Bucket=BUCKET)
    created = 1_764_176_400_000

    def put(n: int) -> None:
        answers = make_answers(n, task_count=1 + n % 3, created_ms=created, completed_ms=created + 600_000, disagreement_rate=0.1)
        loop = {"FlowDefinitionArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/bench-fd",
                "HumanLoopName": f"bench-loop-{n}", "CreationTimeMs": created}
        document = answer_document(loop, input_content=json.dumps({"taskObject": f"s3://in/{n}.jpg"}), answers=answers,
                                   now_ms=created + 600_000, region="us-east-1")
        client.put_object(Bucket=BUCKET, Key=key_of(n), Body=json.dumps(document).encode())

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(put, range(files)))
    return time.perf_counter() - started


# --- child steps (each in a fresh process) -----------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_baseline(url: str, files: int, concurrency: int) -> dict:
    client = s3_client(url, concurrency)

    def get(n: int) -> int:
        return len(client.get_object(Bucket=BUCKET, Key=key_of(n))["Body"].read())

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        size = sum(pool.map(get, range(files)))
    seconds = time.perf_counter() - started
    return {"files": files, "seconds": round(seconds, 2), "files_per_s": round(files / seconds, 1), "bytes": size,
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def setup_django(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    sys.path.insert(0, str(ROOT))
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def child_ingest(database_url: str, url: str, concurrency: int, from_memory: bool) -> dict:
    os.environ.update(AWS_ENDPOINT_URL_S3=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    setup_django(database_url)
    from django.conf import settings
    from django.utils import timezone

    from loops.services import answers
    from loops.services.output_json import parse_output

    settings.A2I_ANSWERS_CONCURRENCY = concurrency
    fetch = answers.read_output
    if from_memory:
        client = s3_client(url, concurrency)
        refs = answers.due_loops(now=timezone.now()).values_list("output_s3_uri", flat=True)
        keys = [uri.split("/", 3)[3] for uri in refs]
        with ThreadPoolExecutor(concurrency) as pool:
            bodies = dict(zip(keys, pool.map(lambda k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read(), keys), strict=True))

        def fetch(ref):
            return parse_output([bodies[ref.output_s3_uri.split("/", 3)[3]]], content_max_bytes=settings.A2I_ANSWERS_MAX_BYTES)

    rss_before = peak_rss_mb()
    started = time.perf_counter()
    report = answers.ingest_due_answers(fetch=fetch)
    seconds = time.perf_counter() - started
    assert report.failed == 0, report.summary()
    return {"files": report.loops, "answers": report.answers, "seconds": round(seconds, 2),
            "files_per_s": round(report.loops / seconds, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_before_mb": round(rss_before, 1)}


def run_child(step: str, *args) -> dict:
    code = "import json, sys; from bench.answers import CHILDREN; print(json.dumps(CHILDREN[sys.argv[1]](*json.loads(sys.argv[2]))))"
    result = subprocess.run([sys.executable, "-c", code, step, json.dumps(args)], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


CHILDREN = {"baseline": child_baseline, "ingest": child_ingest}


# --- the database ------------------------------------------------------------------------


def reset_loops(files: int, s3_url: str) -> None:
    """One flow definition and `files` Completed loops whose output.json is in the bench bucket."""
    from django.db import connection
    from django.utils import timezone

    from loops.models import FlowDefinition

    now = timezone.now()
    fd = FlowDefinition.objects.create(
        arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/bench-fd", name="bench-fd", region="us-east-1",
        status="Active", creation_time=now, task_count=3,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO loops_humanloop (flow_definition_id, name, arn, status, creation_time, failure_code, failure_reason,
                output_s3_uri, first_seen_at, last_seen_at, status_changed_at, deleted_upstream)
            SELECT %s, 'bench-loop-' || g, 'arn:aws:sagemaker:us-east-1:123456789012:human-loop/bench-loop-' || g,
                   'Completed', now() - g * interval '1 second', '', '',
                   's3://bench-answers/out/bench-fd/2026/11/26/17/00/00/bench-loop-' || g || '/output.json',
                   now(), now(), now(), false
            FROM generate_series(0, %s - 1) AS g
            """,
            [fd.pk, files],
        )
        cursor.execute("VACUUM ANALYZE loops_humanloop")


def pending_again() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE loops_humananswer")
        cursor.execute("UPDATE loops_humanloop SET answers_state = 'pending', answers_attempts = 0, answers_next_attempt_at = NULL")


def fill_answers(answers: int, workers: int) -> dict:
    """`answers` answers (two per loop) of `workers` workers over FLOW_DEFINITIONS flow definitions, 30 days."""
    from django.db import connection
    from django.utils import timezone

    from loops.models import FlowDefinition

    started = time.perf_counter()
    now = timezone.now()
    fds = [
        FlowDefinition.objects.create(
            arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:flow-definition/reviewed-{i}", name=f"reviewed-{i}",
            region="us-east-1", status="Active", creation_time=now, task_count=2,
        )
        for i in range(FLOW_DEFINITIONS)
    ]
    loops = answers // 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute(
            f"""
            INSERT INTO loops_humanloop (flow_definition_id, name, arn, status, creation_time, failure_code, failure_reason,
                output_s3_uri, first_seen_at, last_seen_at, status_changed_at, deleted_upstream, answers_state,
                answers_attempts, answers_error, review_seconds, queue_wait_seconds)
            SELECT {fds[0].pk} + (g %% {FLOW_DEFINITIONS}), 'reviewed-' || g,
                   'arn:aws:sagemaker:us-east-1:123456789012:human-loop/reviewed-' || g, 'Completed', created, '', '', '',
                   created, created, created, false, 'ingested', 1, '', 200 + random() * 600, 60 + random() * 300
            FROM (SELECT g, now() - random() * interval '30 days' AS created FROM generate_series(1, %s) AS g) AS s
            """,
            [loops],
        )
        # Workers drawn with a skew (some far busier), two distinct ones per loop.
        cursor.execute(
            f"""
            INSERT INTO loops_humananswer (loop_id, index, flow_definition_id, loop_creation_time, worker_id, worker_sub,
                acceptance_time, submission_time, time_spent_seconds, queue_wait_seconds, answer_content, content_bytes,
                content_too_large, content_hash, other_answers, agreeing_answers, loop_agrees)
            SELECT l.id, i, l.flow_definition_id, l.creation_time,
                   'worker-' || ((floor({workers} * power(random(), 2))::int + i) % {workers}), '',
                   l.creation_time + interval '1 minute', l.creation_time + (120 + random() * 900) * interval '1 second',
                   20 + random() * 400, 60 + random() * 600, '{{"label": "cat"}}', 16, false, 'h', 1,
                   CASE WHEN l.id % 10 = 0 THEN 0 ELSE 1 END, l.id % 10 <> 0
            FROM loops_humanloop l CROSS JOIN generate_series(0, 1) AS i
            WHERE l.name LIKE 'reviewed-%%'
            """
        )
        cursor.execute("VACUUM ANALYZE loops_humanloop")
        cursor.execute("VACUUM ANALYZE loops_humananswer")
        cursor.execute("SELECT count(*), count(DISTINCT worker_id) FROM loops_humananswer")
        count, distinct = cursor.fetchone()
    return {"answers": count, "workers": distinct, "fill_seconds": round(time.perf_counter() - started, 1), "fd_arn": fds[0].arn}


def time_requests(client, url: str, requests: int) -> dict:
    for _ in range(10):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return {"url": url, "requests": requests, "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(percentile(samples, 0.95), 1), "max_ms": round(max(samples), 1)}


def measure_pages(answers: int, workers: int, requests: int) -> dict:
    from urllib.parse import urlencode

    from django.contrib.auth.models import Permission, User
    from django.test import Client

    from loops.services.reviewers import refresh_reviewer_stats

    filled = fill_answers(answers, workers)
    started = time.perf_counter()
    rows = refresh_reviewer_stats()
    refresh = round(time.perf_counter() - started, 2)
    user, _ = User.objects.get_or_create(username="bench-viewer")
    user.user_permissions.set(Permission.objects.filter(codename="view_humanloop"))
    client = Client()
    client.force_login(user)
    pages = {
        "reviewers_all": time_requests(client, "/reviewers/", requests),
        "reviewers_7d": time_requests(client, "/reviewers/?window=7d", requests),
        "reviewers_fd_30d": time_requests(
            client, "/reviewers/?" + urlencode({"flow_definition": filled["fd_arn"], "window": "30d"}), requests
        ),
        "worker_page": time_requests(client, "/reviewers/worker-3/", requests),
    }
    return {**filled, "refresh_seconds": refresh, "reviewer_stats_rows": rows, "pages": pages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answers", description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=500)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="1,000 files, 50,000 answers from 100 workers, 30 requests")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.answers, args.workers, args.requests = 1_000, 50_000, 100, 30

    database_url = os.environ.get("BENCH_ANSWERS_DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(database_url)
    empty_database(database_url)
    setup_django(database_url)

    port = free_port()
    moto = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
        put_seconds = write_files(url, args.files, args.concurrency)
        print(f"wrote {args.files:,} output.json to moto in {put_seconds:.1f} s", flush=True)
        reset_loops(args.files, url)

        baseline = run_child("baseline", url, args.files, args.concurrency)
        print(f"bare GetObject x{args.concurrency}: {baseline['files_per_s']:,} files/s", flush=True)
        ingest = run_child("ingest", database_url, url, args.concurrency, False)
        ratio = ingest["files_per_s"] / baseline["files_per_s"]
        print(f"ingestion x{args.concurrency}: {ingest['files_per_s']:,} files/s ({ratio:.2f} of GetObject), "
              f"peak RSS {ingest['peak_rss_mb']} MB", flush=True)
        pending_again()
        parse_write = run_child("ingest", database_url, url, args.concurrency, True)
        print(f"parse and write alone: {parse_write['files_per_s']:,} files/s", flush=True)
    finally:
        moto.terminate()
        moto.wait(timeout=10)

    pages = measure_pages(args.answers, args.workers, args.requests)
    for name, figures in pages["pages"].items():
        print(f"{name}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms ({pages['answers']:,} answers, "
              f"{pages['workers']} workers)", flush=True)
    print(f"reviewer figures refresh: {pages['refresh_seconds']} s ({pages['reviewer_stats_rows']:,} rows)", flush=True)

    result = {
        "benchmark": "answers",
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_average_at_start": os.getloadavg()[0],
        "files": args.files,
        "concurrency": args.concurrency,
        "bare_getobject": baseline,
        "ingestion": {**ingest, "ratio_to_getobject": round(ratio, 3)},
        "parse_and_write": parse_write,
        "reviewers": pages,
        "targets": TARGETS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"results: {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
