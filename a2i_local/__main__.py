"""Command line: ``python -m a2i_local serve ...`` and ``python -m a2i_local seed ...``.

Bad flags get argparse's usage message and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import time

from .config import Options


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be >= 0: {text!r}")
    return value


def _rate(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def _account(text: str) -> str:
    if len(text) != 12 or not text.isdigit():
        raise argparse.ArgumentTypeError(f"an AWS account id is 12 digits: {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m a2i_local",
                                     description="A2I Local: a wire-compatible local Amazon A2I runtime.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{serve,seed}")
    d = Options()

    serve = commands.add_parser("serve", help="run the emulator")
    serve.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    serve.add_argument("--port", type=_port, default=8765, help="TCP port (default 8765; 0 = any free port)")
    serve.add_argument("--db", metavar="PATH", help="SQLite file to keep state in (default: in memory)")
    serve.add_argument("--workforce", action="store_true", help="simulate workers completing/failing/starting loops")
    serve.add_argument("--throttle-tps", type=_non_negative_float, metavar="N",
                       help="requests per second per operation before ThrottlingException (429)")
    serve.add_argument("--error-rate", type=_rate, default=d.error_rate, metavar="F",
                       help="probability of InternalServerException (500) per request")
    serve.add_argument("--latency-ms", type=_positive_int, default=d.latency_ms, metavar="N",
                       help="added latency per request")
    serve.add_argument("--max-active-loops", type=_positive_int, metavar="N",
                       help="InProgress+Stopping loops before ServiceQuotaExceededException (402)")
    serve.add_argument("--event-webhook", metavar="URL", help="POST EventBridge status-change events here")
    serve.add_argument("--event-webhook-token", metavar="TOKEN",
                       help="send it with each webhook POST as 'Authorization: Bearer TOKEN'")
    serve.add_argument("--event-queue-url", metavar="URL",
                       help="also send each event to this SQS queue, through boto3")
    serve.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint for output.json (e.g. moto server)")
    serve.add_argument("--region", default=d.region, metavar="R")
    serve.add_argument("--account-id", type=_account, default=d.account_id, metavar="ID")
    # Extra Options fields.
    serve.add_argument("--no-strict-names", dest="strict_names", action="store_false",
                       help="accept mixed-case HumanLoopName values as early A2I did")
    serve.add_argument("--stop-delay", type=_non_negative_float, default=d.stop_delay_seconds, metavar="S",
                       help=f"seconds from Stopping to Stopped (default {d.stop_delay_seconds})")
    serve.add_argument("--activation-delay", type=_non_negative_float, default=d.flow_definition_activation_delay,
                       metavar="S", help="seconds a flow definition stays Initializing (default 0)")
    serve.add_argument("--workforce-review-median", type=_non_negative_float,
                       default=d.workforce_review_seconds_median, metavar="S")
    serve.add_argument("--workforce-review-p90", type=_non_negative_float,
                       default=d.workforce_review_seconds_p90, metavar="S")
    serve.add_argument("--workforce-failure-rate", type=_rate, default=d.workforce_failure_rate, metavar="F")
    serve.add_argument("--workforce-abandon-rate", type=_rate, default=d.workforce_abandon_rate, metavar="F")
    serve.add_argument("--workforce-disagreement-rate", type=_rate, default=d.workforce_disagreement_rate, metavar="F")
    serve.add_argument("--workforce-start-rate", type=_non_negative_float, default=d.workforce_start_rate,
                       metavar="N", help="new loops per second started by the workforce")
    serve.add_argument("--workforce-tick", type=_non_negative_float, default=d.workforce_tick_seconds,
                       metavar="S")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])

    seed = commands.add_parser("seed", help="write flow definitions and loops straight into a SQLite file")
    seed.add_argument("--db", metavar="PATH", required=True)
    seed.add_argument("--flow-definitions", type=_positive_int, required=True, metavar="K")
    seed.add_argument("--loops", type=_positive_int, required=True, metavar="N")
    seed.add_argument("--random-seed", type=int, default=0, metavar="S")
    seed.add_argument("--region", default=d.region, metavar="R")
    seed.add_argument("--account-id", type=_account, default=d.account_id, metavar="ID")
    seed.add_argument("--s3-endpoint", metavar="URL", help="also write output.json of the most recent Completed loops there")
    seed.add_argument("--task-count", type=_task_counts, default=[1], metavar="N[,N...]",
                      help="TaskCount (1-3) of each new flow definition, in order, cycled (default 1)")
    seed.add_argument("--output-loops", type=_positive_int, default=300, metavar="N",
                      help="with --s3-endpoint: how many of the most recent Completed loops get output.json (default 300)")
    return parser


def _task_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated integers 1 to 3: {text!r}") from None
    if not counts or any(not 1 <= count <= 3 for count in counts):
        raise argparse.ArgumentTypeError(f"each TaskCount is 1, 2 or 3: {text!r}")
    return counts


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        host=args.host, port=args.port, db=args.db, region=args.region, account_id=args.account_id,
        s3_endpoint=args.s3_endpoint, strict_names=args.strict_names, stop_delay_seconds=args.stop_delay,
        flow_definition_activation_delay=args.activation_delay, throttle_tps=args.throttle_tps,
        error_rate=args.error_rate, latency_ms=args.latency_ms, max_active_loops=args.max_active_loops,
        event_webhook=args.event_webhook, event_webhook_token=args.event_webhook_token,
        event_queue_url=args.event_queue_url, workforce=args.workforce,
        workforce_review_seconds_median=args.workforce_review_median,
        workforce_review_seconds_p90=args.workforce_review_p90,
        workforce_failure_rate=args.workforce_failure_rate, workforce_abandon_rate=args.workforce_abandon_rate,
        workforce_disagreement_rate=args.workforce_disagreement_rate,
        workforce_start_rate=args.workforce_start_rate, workforce_tick_seconds=args.workforce_tick,
    )


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .server import A2ILocalServer

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = A2ILocalServer(options_from_args(args))
    except sqlite3.Error as exc:
        parser.exit(1, f"a2i_local: cannot open the database {args.db}: {exc}\n")
    except OSError as exc:
        parser.exit(1, f"a2i_local: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}\n")
    signal.signal(signal.SIGTERM, lambda *_: server.request_stop())
    print(f"A2I Local listening on {server.url} (db: {args.db or 'in memory'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.stop()
    return 0


def seed(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .errors import OutputWriteError
    from .schema import connect
    from .seed import seed_connection, write_seed_outputs

    if args.flow_definitions < 1:
        parser.error("--flow-definitions must be at least 1")
    started = time.monotonic()
    try:
        conn = connect(args.db)
        try:
            arns = seed_connection(conn, region=args.region, account_id=args.account_id,
                                   flow_definitions=args.flow_definitions, loops=args.loops,
                                   random_seed=args.random_seed, now_ms=int(time.time() * 1000),
                                   task_counts=args.task_count)
            outputs = 0
            if args.s3_endpoint:
                options = Options(s3_endpoint=args.s3_endpoint, region=args.region, account_id=args.account_id)
                outputs = write_seed_outputs(conn, options, limit=args.output_loops, now_ms=int(time.time() * 1000))
            # Fold the WAL into the main file: callers may move the file once we exit.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        parser.exit(1, f"a2i_local: cannot seed {args.db}: {exc}\n")
    except OutputWriteError as exc:
        parser.exit(1, f"a2i_local: cannot write output.json: {exc.message}\n")
    print(f"seeded {args.loops} loops over {len(arns)} flow definitions into {args.db} "
          f"({outputs} output.json written) in {time.monotonic() - started:.1f}s")
    for arn in arns:
        print(arn)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and args.event_webhook_token and not args.event_webhook:
        parser.error("--event-webhook-token needs --event-webhook")
    if args.command == "serve":
        return serve(args, parser)
    return seed(args, parser)


if __name__ == "__main__":
    sys.exit(main())
