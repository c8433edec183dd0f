"""Reading the reviewers' answers: every Completed loop's output.json, once, in the background.

A2I keeps no worker activity for human review workflows; output.json is the only record
of who answered, when and how long (docs/reviewers.md). This service finds the Completed
loops whose answers are not read yet (or are due for another attempt), claims a batch of
them, reads their files from S3 on A2I_ANSWERS_CONCURRENCY threads through loops.a2i,
parses each with loops.services.output_json (streamed, capped) and writes, per loop, one
HumanAnswer row per answer and the loop's exact times, in transactions of WRITE_CHUNK loops.

Who triggers it is not its business: the Celery task after a sync and on beat's schedule,
and `manage.py ingest_answers`. Several may run at once: a batch is claimed with
`SELECT ... FOR UPDATE SKIP LOCKED` and a lease (answers_next_attempt_at), so no loop is
read twice at the same time, and one whose reader died is read again after the lease.

A file that cannot be read (missing, no permission, not JSON, a schema it does not
understand) is recorded on the loop with the reason, and read again after a backoff,
at most A2I_ANSWERS_MAX_ATTEMPTS times; then it is given up (state "failed") until
`ingest_answers --retry-failed`. An unreachable S3 endpoint stops the run instead of
spending every loop's attempts. Reading is idempotent: answers are unique per (loop,
position), and an ingested loop is never selected again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from loops import a2i
from loops.models import AnswersState, FlowDefinition, HumanAnswer, HumanLoop, HumanLoopStatus
from loops.services import page_cache
from loops.services.output_json import Output, OutputUnreadable, parse_output

logger = logging.getLogger(__name__)

BATCH_SIZE = 1000
# Loops whose results are written in one transaction.
WRITE_CHUNK = 500
# How long a claimed batch is reserved for its reader; after that another reader may take it.
CLAIM_SECONDS = 300
# Backoff after the n-th failed read: BACKOFF_SECONDS * 4 ** (n - 1), at most BACKOFF_MAX_SECONDS.
BACKOFF_SECONDS = 60
BACKOFF_MAX_SECONDS = 6 * 3600
DUE_STATES = (AnswersState.PENDING, AnswersState.RETRY)
# The PostgreSQL advisory lock that keeps one background ingestion at a time (see single_runner).
ADVISORY_LOCK_KEY = 0x4A2A_0511


@dataclass(frozen=True, slots=True)
class LoopRef:
    """What reading one loop's output.json needs."""

    id: int
    flow_definition_id: int
    region: str
    output_s3_uri: str
    creation_time: datetime
    attempts: int


@dataclass
class IngestReport:
    loops: int = 0
    ingested: int = 0
    answers: int = 0
    failed: int = 0
    given_up: int = 0
    # Causes of this run's failures: {"NoSuchKey": 3, "json": 1, ...}.
    reasons: Counter = field(default_factory=Counter)
    # S3 could not be reached: the run stopped early, with this message.
    unavailable: str = ""
    seconds: float = 0.0
    flow_definition_ids: set[int] = field(default_factory=set)

    def add(self, other: IngestReport) -> None:
        self.loops += other.loops
        self.ingested += other.ingested
        self.answers += other.answers
        self.failed += other.failed
        self.given_up += other.given_up
        self.reasons.update(other.reasons)
        self.unavailable = other.unavailable or self.unavailable
        self.flow_definition_ids |= other.flow_definition_ids

    def summary(self) -> str:
        text = f"{self.loops} loops: {self.ingested} read ({self.answers} answers), {self.failed} unreadable"
        if self.given_up:
            text += f" ({self.given_up} given up)"
        if self.reasons:
            text += " [" + ", ".join(f"{reason} {n}" for reason, n in self.reasons.most_common()) + "]"
        if self.unavailable:
            text += f"; stopped: {self.unavailable}"
        return text


Fetch = Callable[[LoopRef], Output]


def read_output(ref: LoopRef) -> Output:
    """GetObject + parse, streamed (the default Fetch). Raises a2i.OutputUnavailable or OutputUnreadable."""
    with a2i.open_human_loop_output(ref.output_s3_uri, ref.region) as output:
        return parse_output(output.chunks(), content_max_bytes=settings.A2I_ANSWERS_MAX_BYTES)


# --- selecting ------------------------------------------------------------------------


def due_loops(*, now: datetime, flow_definition_id: int | None = None, since: datetime | None = None, states=DUE_STATES):
    """Completed loops whose answers are to be read now (index loop_answers_unread)."""
    loops = HumanLoop.objects.filter(status=HumanLoopStatus.COMPLETED, answers_state__in=states).filter(
        Q(answers_next_attempt_at__isnull=True) | Q(answers_next_attempt_at__lte=now)
    )
    if flow_definition_id is not None:
        loops = loops.filter(flow_definition_id=flow_definition_id)
    if since is not None:
        loops = loops.filter(creation_time__gte=since)
    return loops


def claim_batch(size: int, *, now: datetime, flow_definition_id=None, since=None) -> list[LoopRef]:
    """Reserve up to `size` due loops for CLAIM_SECONDS: never read first, then those due for
    another attempt, newest first in each (one index range each). One short transaction."""
    regions = dict(FlowDefinition.objects.values_list("id", "region"))
    with transaction.atomic():
        rows = []
        for state in DUE_STATES:
            if len(rows) >= size:
                break
            rows += list(
                due_loops(now=now, flow_definition_id=flow_definition_id, since=since, states=[state])
                .order_by("-creation_time")
                .select_for_update(skip_locked=True)
                .values_list("id", "flow_definition_id", "output_s3_uri", "creation_time", "answers_attempts", "arn")[
                    : size - len(rows)
                ]
            )
        if rows:
            HumanLoop.objects.filter(pk__in=[row[0] for row in rows]).update(
                answers_next_attempt_at=now + timedelta(seconds=CLAIM_SECONDS)
            )
    return [
        LoopRef(pk, fd_id, regions.get(fd_id) or _region(arn), uri, created, attempts)
        for pk, fd_id, uri, created, attempts, arn in rows
    ]


def _region(arn: str) -> str:
    try:
        return a2i.region_of_arn(arn)
    except ValueError:
        return settings.A2I_REGIONS[0]


def reset_failed(*, flow_definition_id: int | None = None, since: datetime | None = None) -> int:
    """Make given-up and waiting loops due again with fresh attempts; returns how many. One UPDATE."""
    loops = HumanLoop.objects.filter(status=HumanLoopStatus.COMPLETED, answers_state__in=[AnswersState.FAILED, AnswersState.RETRY])
    if flow_definition_id is not None:
        loops = loops.filter(flow_definition_id=flow_definition_id)
    if since is not None:
        loops = loops.filter(creation_time__gte=since)
    return loops.update(answers_state=AnswersState.RETRY, answers_attempts=0, answers_next_attempt_at=None)


# --- the run --------------------------------------------------------------------------


def ingest_due_answers(
    *,
    flow_definition_id: int | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    deadline: float | None = None,
    batch_size: int | None = None,
    fetch: Fetch = read_output,
    progress: Callable[[IngestReport], None] | None = None,
) -> IngestReport:
    """Read the answers of due loops, batch after batch, until none is due.

    Stops early at `limit` loops, at time.monotonic() `deadline`, or when S3 is
    unreachable (report.unavailable). Logs one line per batch; calls `progress` with the
    running totals after each. Side effects: HumanAnswer rows, the loops' answer fields.
    Raises only database errors.
    """
    total = IngestReport()
    started = time.monotonic()
    batch_size = batch_size or BATCH_SIZE
    while limit is None or total.loops < limit:
        if deadline is not None and time.monotonic() >= deadline:
            break
        size = batch_size if limit is None else min(batch_size, limit - total.loops)
        batch = claim_batch(size, now=timezone.now(), flow_definition_id=flow_definition_id, since=since)
        if not batch:
            break
        batch_started = time.monotonic()
        report = ingest_loops(batch, fetch=fetch)
        logger.info("answers: batch of %s in %.2f s", report.summary(), time.monotonic() - batch_started)
        total.add(report)
        total.seconds = time.monotonic() - started
        if progress is not None:
            progress(total)
        if report.unavailable:
            break
    total.seconds = time.monotonic() - started
    return total


def ingest_loops(loops: list[LoopRef], *, fetch: Fetch = read_output) -> IngestReport:
    """Read and write the answers of these (claimed) loops. The fetches run on
    A2I_ANSWERS_CONCURRENCY threads; the writes happen here, WRITE_CHUNK loops per transaction."""
    report = IngestReport()
    pending: list[tuple[LoopRef, Output | Exception]] = []
    queue = iter(loops)
    with ThreadPoolExecutor(max_workers=max(1, settings.A2I_ANSWERS_CONCURRENCY), thread_name_prefix="answers") as pool:
        running = {}
        # Keep the pool fed without submitting the whole batch at once, so that an
        # unreachable S3 stops the batch after at most a pool's worth of calls.
        for ref in _take(queue, settings.A2I_ANSWERS_CONCURRENCY * 2):
            running[pool.submit(_fetch_one, fetch, ref)] = ref
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                ref = running.pop(future)
                result = future.result()
                if isinstance(result, a2i.OutputUnavailable) and result.code == "unreachable":
                    report.unavailable = str(result)
                pending.append((ref, result))
                if not report.unavailable:
                    for next_ref in _take(queue, 1):
                        running[pool.submit(_fetch_one, fetch, next_ref)] = next_ref
            if len(pending) >= WRITE_CHUNK:
                _write(pending, report)
                pending = []
    if pending:
        _write(pending, report)
    unread = [ref.id for ref in queue]
    if unread:
        # Never fetched (S3 unreachable): release the claim, no attempt spent.
        HumanLoop.objects.filter(pk__in=unread).update(answers_next_attempt_at=None)
    return report


def _take(iterator, n: int) -> Iterable:
    for _ in range(n):
        try:
            yield next(iterator)
        except StopIteration:
            return


def _fetch_one(fetch: Fetch, ref: LoopRef) -> Output | Exception:
    try:
        return fetch(ref)
    except (a2i.OutputUnavailable, OutputUnreadable) as exc:
        return exc
    except Exception as exc:  # a bug must not lose the batch's other results; it is logged and retried
        logger.exception("answers: reading %s failed unexpectedly", ref.output_s3_uri)
        return exc


# --- writing --------------------------------------------------------------------------


def _write(results: list[tuple[LoopRef, Output | Exception]], report: IngestReport) -> None:
    now = timezone.now()
    rows: list[dict] = []
    updates: list[HumanLoop] = []
    for ref, result in results:
        report.loops += 1
        report.flow_definition_ids.add(ref.flow_definition_id)
        if isinstance(result, Output):
            answers, loop = _ingested(ref, result)
            rows.extend(answers)
            updates.append(loop)
            report.ingested += 1
            report.answers += len(answers)
        else:
            updates.append(_failed(ref, result, now, report))
    with transaction.atomic():
        _insert_answers(rows)
        _update_loops(updates)
        page_cache.data_changed()


ANSWER_COLUMNS = {
    # HumanAnswer column: PostgreSQL array type
    "loop_id": "bigint", "index": "int", "flow_definition_id": "bigint", "loop_creation_time": "timestamptz",
    "worker_id": "text", "worker_sub": "text", "acceptance_time": "timestamptz", "submission_time": "timestamptz",
    "time_spent_seconds": "float8", "queue_wait_seconds": "float8", "answer_content": "jsonb", "content_bytes": "int",
    "content_too_large": "bool", "content_hash": "text", "other_answers": "int", "agreeing_answers": "int",
    "loop_agrees": "bool",
}


def _insert_answers(rows: list[dict]) -> None:
    """Insert answer rows; an answer already stored (a loop read again after a lost claim)
    is skipped, so nothing new is written. One INSERT ... SELECT FROM unnest(arrays) ON
    CONFLICT DO NOTHING on PostgreSQL (several times cheaper than bulk_create's per-field
    preparation); bulk_create(ignore_conflicts=True) elsewhere."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        HumanAnswer.objects.bulk_create([HumanAnswer(**row) for row in rows], ignore_conflicts=True, batch_size=1000)
        return
    names = list(ANSWER_COLUMNS)
    arrays = []
    for name in names:
        values = [row[name] for row in rows]
        if name == "answer_content":
            # JSON text, cast per element: psycopg sends no jsonb[] of Python dicts.
            values = [None if value is None else json.dumps(value, ensure_ascii=False) for value in values]
        arrays.append(values)
    types = ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for kind in ANSWER_COLUMNS.values())
    select = ", ".join(f"v.c{i}::jsonb" if kind == "jsonb" else f"v.c{i}" for i, kind in enumerate(ANSWER_COLUMNS.values()))
    aliases = ", ".join(f"c{i}" for i in range(len(names)))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {HumanAnswer._meta.db_table} ({", ".join(f'"{name}"' for name in names)})
            SELECT {select} FROM unnest({types}) AS v({aliases})
            ON CONFLICT (loop_id, index) DO NOTHING
            """,
            arrays,
        )


UPDATED_FIELDS = [
    "last_submission_time",
    "review_seconds",
    "queue_wait_seconds",
    "answers_state",
    "answers_attempts",
    "answers_next_attempt_at",
    "answers_error",
]


def _update_loops(updates: list[HumanLoop]) -> None:
    """Write the answer fields of these loops: one UPDATE ... FROM unnest(arrays) on
    PostgreSQL (Django's bulk_update builds a CASE per field and row, which cost more than
    everything else the ingestion does), bulk_update elsewhere."""
    if connection.vendor != "postgresql":
        HumanLoop.objects.bulk_update(updates, UPDATED_FIELDS, batch_size=WRITE_CHUNK)
        return
    columns = [[getattr(loop, name) for loop in updates] for name in ["pk", *UPDATED_FIELDS]]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {HumanLoop._meta.db_table} AS l
            SET last_submission_time = v.last, review_seconds = v.review, queue_wait_seconds = v.wait,
                answers_state = v.state, answers_attempts = v.attempts, answers_next_attempt_at = v.next_at,
                answers_error = v.error
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::float8[], %s::float8[], %s::text[], %s::int[],
                        %s::timestamptz[], %s::text[]) AS v(id, last, review, wait, state, attempts, next_at, error)
            WHERE l.id = v.id
            """,
            columns,
        )


def _ingested(ref: LoopRef, output: Output) -> tuple[list[dict], HumanLoop]:
    answers = output.answers
    comparable = [a for a in answers if not a.content_too_large]
    hashes = Counter(a.content_hash for a in comparable)
    # The agreement rule (docs/reviewers.md): the answers agree when their normalised
    # answerContent is equal; unknown with fewer than two answers or any one too large to read.
    agrees = None if len(comparable) < 2 or len(comparable) < len(answers) else len(hashes) == 1
    created = ref.creation_time
    rows = []
    for answer in answers:
        compared = not answer.content_too_large and len(comparable) > 1
        rows.append(
            {
                "loop_id": ref.id,
                "index": answer.index,
                "flow_definition_id": ref.flow_definition_id,
                "loop_creation_time": created,
                "worker_id": answer.worker_id,
                "worker_sub": answer.worker_sub,
                "acceptance_time": answer.acceptance_time,
                "submission_time": answer.submission_time,
                "time_spent_seconds": answer.time_spent_seconds,
                "queue_wait_seconds": (answer.acceptance_time - created).total_seconds() if answer.acceptance_time else None,
                "answer_content": answer.content,
                "content_bytes": answer.content_bytes,
                "content_too_large": answer.content_too_large,
                "content_hash": answer.content_hash,
                "other_answers": len(comparable) - 1 if compared else 0,
                "agreeing_answers": hashes[answer.content_hash] - 1 if compared else 0,
                "loop_agrees": agrees,
            }
        )
    last = max((a.submission_time for a in answers), default=None)
    first_accepted = min((a.acceptance_time for a in answers if a.acceptance_time), default=None)
    too_large = [a for a in answers if a.content_too_large]
    note = ""
    if too_large:
        note = "; ".join(
            f"the answer of {a.worker_id} is too large to keep ({a.content_bytes:,} bytes, "
            f"more than {settings.A2I_ANSWERS_MAX_BYTES:,}): its times are kept, not its content"
            for a in too_large
        )[:1024]
    loop = HumanLoop(
        pk=ref.id,
        last_submission_time=last,
        review_seconds=(last - created).total_seconds() if last else None,
        queue_wait_seconds=(first_accepted - created).total_seconds() if first_accepted else None,
        answers_state=AnswersState.INGESTED,
        answers_attempts=ref.attempts + 1,
        answers_next_attempt_at=None,
        answers_error=note,
    )
    return rows, loop


def _failed(ref: LoopRef, error: Exception, now: datetime, report: IngestReport) -> HumanLoop:
    if isinstance(error, a2i.OutputUnavailable):
        reason, message = error.code, str(error)
    elif isinstance(error, OutputUnreadable):
        reason, message = "unreadable", f"The output cannot be read: {error}"
    else:
        reason, message = "error", f"Reading the output failed: {error.__class__.__name__}: {error}"
    report.reasons[reason] += 1
    report.failed += 1
    if reason == "unreachable":
        # Not the file's fault: try again soon, without spending an attempt.
        attempts, state = ref.attempts, AnswersState.RETRY if ref.attempts else AnswersState.PENDING
        next_attempt = now + timedelta(seconds=BACKOFF_SECONDS)
    else:
        attempts = ref.attempts + 1
        if attempts >= settings.A2I_ANSWERS_MAX_ATTEMPTS:
            state, next_attempt = AnswersState.FAILED, None
            report.given_up += 1
        else:
            state = AnswersState.RETRY
            next_attempt = now + timedelta(seconds=min(BACKOFF_SECONDS * 4 ** (attempts - 1), BACKOFF_MAX_SECONDS))
    return HumanLoop(
        pk=ref.id,
        last_submission_time=None,
        review_seconds=None,
        queue_wait_seconds=None,
        answers_state=state,
        answers_attempts=attempts,
        answers_next_attempt_at=next_attempt,
        answers_error=" ".join(message.split())[:1024],
    )


# --- one background run at a time ----------------------------------------------------------


class single_runner:
    """`with single_runner() as mine:` mine is False when another process holds the lock.

    A PostgreSQL session advisory lock (released with the block, or when the connection
    dies), so that the task queued after every sync and the one on beat's schedule do
    not occupy several worker slots at once. Elsewhere (SQLite) always True: the claims
    keep concurrent runs correct anyway.
    """

    def __enter__(self) -> bool:
        self.held = False
        if connection.vendor != "postgresql":
            return True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            self.held = bool(cursor.fetchone()[0])
        return self.held

    def __exit__(self, *exc_info) -> None:
        if self.held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])
