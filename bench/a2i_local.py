"""Benchmark A2I Local's ListHumanLoops on a large store (issue 2, "Speed").

Steps:
1. seed N loops (default 1,000,000) into a temporary SQLite file with
   `python -m a2i_local seed` and report the wall time (targets: under a minute);
2. start `python -m a2i_local serve` on that file in a separate process (its own GIL,
   as in real use) and wait for /_local/health;
3. ListHumanLoops pages of 100 over a keep-alive raw HTTP connection
   (`http.client.HTTPConnection`, reused), timing every request: random flow
   definitions, sort orders and starting positions (CreationTimeBefore/After), each
   followed along a NextToken chain, plus one long chain to measure deep pages
   (targets: p50 <= 3 ms, p99 <= 10 ms);
4. pages per second through one boto3 client and its paginator (target >= 300);
5. optionally, the cost of writing a response in two sends without TCP_NODELAY, with a
   tiny http.server serving a page-sized body both ways (the ~40 ms Nagle/delayed-ACK stall).

Prints a short summary and writes bench/results/a2i_local.json.
Usage: python -m bench.a2i_local [--loops N] [--flow-definitions K] [--requests R] [--no-naive] [--db PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import boto3
import botocore.session
from botocore.config import Config

from loops.a2i import parse_timestamp

RESULTS = Path(__file__).resolve().parent / "results" / "a2i_local.json"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize_ms(samples: list[float]) -> dict:
    return {
        "count": len(samples),
        "p50_ms": round(percentile(samples, 50) * 1000, 3),
        "p90_ms": round(percentile(samples, 90) * 1000, 3),
        "p99_ms": round(percentile(samples, 99) * 1000, 3),
        "max_ms": round(max(samples) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }


def seed(db: Path, loops: int, flow_definitions: int) -> float:
    """Run the seed command; return its wall time in seconds (interpreter start included)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "a2i_local", "seed", "--db", str(db), "--flow-definitions", str(flow_definitions),
         "--loops", str(loops), "--random-seed", "1"],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def start_server(db: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "a2i_local", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/_local/health")
            if connection.getresponse().status == 200:
                connection.close()
                return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("server did not come up within 120 s")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc), None elsewhere.

    On a shared machine wall-clock latency mostly measures the neighbours; CPU time per
    request is the part that is the server's own.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def boto_client(service: str, url: str, *, fast_timestamps: bool = False):
    session = None
    if fast_timestamps:
        core = botocore.session.get_session()
        # The dashboard's own parser (loops/a2i.py installs it the same way).
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        session = boto3.session.Session(botocore_session=core)
    return (session or boto3).client(
        service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench", config=Config(retries={"total_max_attempts": 1}),
    )


def flow_definition_arns(url: str) -> list[str]:
    sagemaker = boto_client("sagemaker", url)
    pages = sagemaker.get_paginator("list_flow_definitions").paginate()
    return [s["FlowDefinitionArn"] for page in pages for s in page["FlowDefinitionSummaries"]]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def timed_list(connection: http.client.HTTPConnection, params: dict) -> tuple[float, dict]:
    path = "/human-loops?" + urlencode(params)
    started = time.perf_counter()
    connection.request("GET", path, headers={"Accept": "application/json"})
    response = connection.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"GET {path} -> {response.status}: {body[:300]!r}")
    return elapsed, json.loads(body)


def measure_raw(url: str, arns: list[str], requests: int, rng: random.Random) -> dict:
    """Random pages along NextToken chains over one keep-alive connection."""
    port = int(url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port)
    now = datetime.now(UTC)
    samples: list[float] = []
    by_kind: dict[str, list[float]] = {"no_time_filter": [], "creation_time_before": [], "creation_time_after": []}
    loops_seen = 0
    while len(samples) < requests:
        params = {"FlowDefinitionArn": rng.choice(arns), "MaxResults": 100,
                  "SortOrder": rng.choice(["Ascending", "Descending"])}
        where = rng.random()
        moment = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
        kind = "no_time_filter"
        if where < 0.4:
            params["CreationTimeBefore"] = iso(moment)
            kind = "creation_time_before"
        elif where < 0.8:
            params["CreationTimeAfter"] = iso(moment)
            kind = "creation_time_after"
        for _ in range(rng.randint(1, 20)):  # follow the chain a random number of pages
            elapsed, page = timed_list(connection, params)
            samples.append(elapsed)
            by_kind[kind].append(elapsed)
            loops_seen += len(page["HumanLoopSummaries"])
            if "NextToken" not in page or len(samples) >= requests:
                break
            params["NextToken"] = page["NextToken"]
    # Deep pages: one NextToken chain from the newest loop, up to 500 pages; the pages
    # past the first 100 (or past half the listing, if shorter) are timed separately.
    chain: list[float] = []
    params = {"FlowDefinitionArn": arns[0], "MaxResults": 100}
    for _ in range(500):
        elapsed, page = timed_list(connection, params)
        chain.append(elapsed)
        if "NextToken" not in page:
            break
        params["NextToken"] = page["NextToken"]
    connection.close()
    first_deep = min(100, len(chain) // 2)
    deep = summarize_ms(chain[first_deep:])
    deep["from_page"] = first_deep + 1
    return {"random": summarize_ms(samples), "deep_pages": deep,
            "random_by_filter": {kind: summarize_ms(values) for kind, values in by_kind.items() if values},
            "mean_loops_per_page": round(loops_seen / max(1, len(samples)), 1)}


def measure_boto3_pages_per_second(url: str, arn: str, seconds: float, fast_timestamps: bool) -> dict:
    """Pages/s through one boto3 client's paginator, in three rounds of `seconds` / 3.

    The best round is the figure (as timeit does): on a shared machine the other rounds
    mostly measure the neighbours. Every round is kept in the results.
    """
    runtime = boto_client("sagemaker-a2i-runtime", url, fast_timestamps=fast_timestamps)
    runtime.list_human_loops(FlowDefinitionArn=arn, MaxResults=1)  # connect and load the model first
    cpu_started = time.process_time()
    rounds = [_paginate_for(runtime, arn, seconds / 3) for _ in range(3)]
    cpu = time.process_time() - cpu_started
    best = max(rounds, key=lambda r: r["pages_per_second"])
    total_pages = sum(r["pages"] for r in rounds)
    # Pages per second of this process's own CPU time: the client's ceiling on an idle core.
    return {**best, "rounds_pages_per_second": [r["pages_per_second"] for r in rounds],
            "client_cpu_ms_per_page": round(cpu / total_pages * 1000, 3),
            "pages_per_client_cpu_second": round(total_pages / cpu, 1)}


def _paginate_for(runtime, arn: str, seconds: float) -> dict:
    pages = loops = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for page in runtime.get_paginator("list_human_loops").paginate(
            FlowDefinitionArn=arn, PaginationConfig={"PageSize": 100}
        ):
            pages += 1
            loops += len(page["HumanLoopSummaries"])
            if time.perf_counter() - started >= seconds:
                break
    elapsed = time.perf_counter() - started
    return {"pages": pages, "seconds": round(elapsed, 3), "pages_per_second": round(pages / elapsed, 1),
            "loops_per_second": round(loops / elapsed)}


class _PageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"{}"
    one_send = True

    def do_GET(self):
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(self.body)}\r\n\r\n").encode()
        if self.one_send:
            self.wfile.write(head + self.body)
        else:  # what a naive http.server handler does: headers, then body
            self.wfile.write(head)
            self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def measure_send_strategy(body: bytes, one_send: bool, requests: int) -> dict:
    handler = type("Handler", (_PageHandler,), {"body": body, "one_send": one_send})

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):
            conn, addr = super().get_request()
            if one_send:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn, addr

    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port)
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            connection.request("GET", "/human-loops")
            connection.getresponse().read()
            samples.append(time.perf_counter() - started)
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    return summarize_ms(samples)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.a2i_local", description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=1_000_000, help="loops to seed (default 1,000,000)")
    parser.add_argument("--flow-definitions", type=int, default=10, help="flow definitions to seed (default 10)")
    parser.add_argument("--requests", type=int, default=3000, help="raw ListHumanLoops requests to time")
    parser.add_argument("--boto3-seconds", type=float, default=10.0, help="how long to run the boto3 paginator")
    parser.add_argument("--no-naive", action="store_true", help="skip the two-send vs one-send comparison")
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--db", type=Path, help="benchmark this already seeded SQLite file instead of seeding one")
    args = parser.parse_args(argv)
    rng = random.Random(args.random_seed)

    results: dict = {
        "benchmark": "a2i_local",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "loops": args.loops,
        "flow_definitions": args.flow_definitions,
    }
    with tempfile.TemporaryDirectory(prefix="a2i-bench-") as tmp:
        if args.db:
            db = args.db
            results.update(loops=None, flow_definitions=None, seed_seconds=None, db=str(db))
            print(f"using the seeded store {db} (no seeding)", flush=True)
        else:
            db = Path(tmp) / "a2i.sqlite3"
            print(f"seeding {args.loops:,} loops over {args.flow_definitions} flow definitions ...", flush=True)
            results["seed_seconds"] = round(seed(db, args.loops, args.flow_definitions), 2)
            print(f"  seed: {results['seed_seconds']} s", flush=True)
        results["db_bytes"] = db.stat().st_size

        process, url = start_server(db)
        try:
            arns = flow_definition_arns(url)
            if not arns:
                raise SystemExit("the seeded store has no flow definitions")
            cpu_before = process_cpu_seconds(process.pid)
            results["list_raw_keepalive"] = measure_raw(url, arns, args.requests, rng)
            cpu_after = process_cpu_seconds(process.pid)
            if cpu_before is not None and cpu_after is not None:
                served = results["list_raw_keepalive"]["random"]["count"] + results["list_raw_keepalive"]["deep_pages"]["count"]
                results["list_raw_keepalive"]["server_cpu_ms_per_page"] = round(
                    (cpu_after - cpu_before) / served * 1000, 3)
            raw = results["list_raw_keepalive"]["random"]
            deep = results["list_raw_keepalive"]["deep_pages"]
            print(f"  ListHumanLoops, pages of 100, keep-alive raw HTTP ({raw['count']} requests): "
                  f"p50 {raw['p50_ms']} ms, p99 {raw['p99_ms']} ms", flush=True)
            if "server_cpu_ms_per_page" in results["list_raw_keepalive"]:
                print(f"  server CPU time per page: {results['list_raw_keepalive']['server_cpu_ms_per_page']} ms "
                      f"(clock ticks of 10 ms, averaged)", flush=True)
            print(f"  deep pages ({deep['from_page']}-{deep['from_page'] + deep['count'] - 1} along one NextToken "
                  f"chain): p50 {deep['p50_ms']} ms, p99 {deep['p99_ms']} ms", flush=True)
            # botocore parses ISO-8601 timestamps with dateutil (about 0.25 ms each, 100 per
            # page); the dashboard installs ciso8601 instead (loops/a2i.py). Measure both.
            for key, fast, label in (("list_boto3_paginator", True, "ciso8601 timestamps, as the dashboard"),
                                     ("list_boto3_paginator_default_parser", False, "botocore's default parser")):
                results[key] = boto = measure_boto3_pages_per_second(url, arns[0], args.boto3_seconds, fast)
                print(f"  boto3 paginator, one client, {label}: {boto['pages_per_second']} pages/s "
                      f"({boto['loops_per_second']:,} loops/s; rounds {boto['rounds_pages_per_second']}; "
                      f"{boto['pages_per_client_cpu_second']} pages per client CPU second)", flush=True)

            if not args.no_naive:
                port = int(url.rsplit(":", 1)[1])
                connection = http.client.HTTPConnection("127.0.0.1", port)
                connection.request("GET", "/human-loops?" + urlencode({"FlowDefinitionArn": arns[0], "MaxResults": 100}))
                body = connection.getresponse().read()
                connection.close()
                results["send_strategy"] = {
                    "body_bytes": len(body),
                    "one_send_nodelay": measure_send_strategy(body, True, 200),
                    "two_sends_naive": measure_send_strategy(body, False, 50),
                }
                one, two = results["send_strategy"]["one_send_nodelay"], results["send_strategy"]["two_sends_naive"]
                print(f"  same {len(body):,}-byte page from a bare http.server: one send + TCP_NODELAY "
                      f"p50 {one['p50_ms']} ms; headers and body in two sends p50 {two['p50_ms']} ms", flush=True)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = {
        "seed_under_60s": None if results["seed_seconds"] is None else results["seed_seconds"] < 60,
        "p50_at_most_3ms": results["list_raw_keepalive"]["random"]["p50_ms"] <= 3,
        "p99_at_most_10ms": results["list_raw_keepalive"]["random"]["p99_ms"] <= 10,
        "boto3_at_least_300_pages_per_second": results["list_boto3_paginator"]["pages_per_second"] >= 300,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"  targets: {results['targets']}; load average {results['machine']['load_average_at_start']} "
          f"-> {results['machine']['load_average_at_end']} on {os.cpu_count()} CPUs")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return results


if __name__ == "__main__":
    main()
