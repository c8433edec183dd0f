"""The reviewers pages' figures, from the answers read out of output.json (HumanAnswer).

Per worker, over the answers selected by the filters (their loops' creation time, as on
the loop list): answers, loops answered, loops per active day (distinct UTC days with a
submission), median and p90 time on task (timeSpentInSeconds), median queue wait (the
worker's acceptance - the loop's creation), share of all the answers selected, and the
agreement with the other reviewers of the same loops: of the pairs (this answer, another
answer of the same loop), the share that are equal under the agreement rule
(services.output_json.normalised_json).

Aggregating a million answers per request is not affordable, so, as services.stats does
for the overview, the figures of every standard window (1h, 24h, 7d, 30d, all) for all
flow definitions and for each one are precomputed into ReviewerStats by
refresh_reviewer_stats (after answers are read, at most every REFRESH_MIN_SECONDS, and
whenever older than A2I_STATS_MAX_AGE). Other filters (created_after/created_before,
several flow definitions) are computed on request.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from loops.filters import WINDOWS, ReviewerFilter
from loops.models import AnswersState, FlowDefinition, HumanAnswer, HumanLoop, HumanLoopStatus, ReviewerStats
from loops.services.stats import _percentile

# A refresh after answers were read waits at least this long after the previous one.
REFRESH_MIN_SECONDS = 60
RECENT_ANSWERS = 50
CHART_DAYS = 30
COUNT_CAP = 10_000


@dataclass
class ReviewerRow:
    worker_id: str
    answers: int
    loops: int
    active_days: int
    time_median: float | None
    time_p90: float | None
    wait_median: float | None
    share: float
    pairs_compared: int
    pairs_agreeing: int

    @property
    def loops_per_day(self) -> float | None:
        return self.loops / self.active_days if self.active_days else None

    @property
    def agreement(self) -> float | None:
        return self.pairs_agreeing / self.pairs_compared if self.pairs_compared else None


@dataclass
class ReviewerList:
    rows: list[ReviewerRow]
    total_answers: int
    # When the figures were computed: the refresh time (precomputed) or now.
    computed_at: datetime | None
    precomputed: bool


# --- aggregation ----------------------------------------------------------------------

_COLUMNS = (
    "worker_id", "flow_definition_id", "loop_id", "submission_time", "time_spent_seconds",
    "queue_wait_seconds", "other_answers", "agreeing_answers",
)


def aggregate(answers: QuerySet, *, per_flow_definition: bool = False) -> list[tuple]:
    """Per worker (and, with per_flow_definition, also per worker and flow definition) figures
    of `answers`: tuples (flow_definition_id or None, worker_id, answers, loops, active_days,
    time_median, time_p90, wait_median, pairs_compared, pairs_agreeing). Read-only.

    One GROUP BY (GROUPING SETS) statement with percentile_cont on PostgreSQL; the same
    figures in Python elsewhere (SQLite under `make run`).
    """
    answers = answers.order_by().values(*_COLUMNS)
    if connection.vendor == "postgresql":
        return _aggregate_sql(answers, per_flow_definition)
    return _aggregate_python(answers, per_flow_definition)


def _aggregate_sql(answers: QuerySet, per_flow_definition: bool) -> list[tuple]:
    sql, params = answers.query.sql_with_params()
    grouping = "GROUPING SETS ((a.worker_id), (a.worker_id, a.flow_definition_id))" if per_flow_definition else "a.worker_id"
    scope = "a.flow_definition_id" if per_flow_definition else "NULL::bigint"
    query = f"""
        SELECT {scope}, a.worker_id, count(*), count(DISTINCT a.loop_id),
               count(DISTINCT (a.submission_time AT TIME ZONE 'UTC')::date),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY a.time_spent_seconds),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY a.time_spent_seconds),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY a.queue_wait_seconds),
               coalesce(sum(a.other_answers), 0), coalesce(sum(a.agreeing_answers), 0)
        FROM ({sql}) AS a
        GROUP BY {grouping}
    """
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return [tuple(row) for row in cursor.fetchall()]


def _aggregate_python(answers: QuerySet, per_flow_definition: bool) -> list[tuple]:
    groups: dict[tuple, dict] = defaultdict(
        lambda: {"answers": 0, "loops": set(), "days": set(), "times": [], "waits": [], "other": 0, "agreeing": 0}
    )
    for row in answers.iterator(chunk_size=2000):
        keys = [(None, row["worker_id"])]
        if per_flow_definition:
            keys.append((row["flow_definition_id"], row["worker_id"]))
        for key in keys:
            group = groups[key]
            group["answers"] += 1
            group["loops"].add(row["loop_id"])
            if row["submission_time"]:
                group["days"].add(row["submission_time"].astimezone(UTC).date())
            if row["time_spent_seconds"] is not None:
                group["times"].append(row["time_spent_seconds"])
            if row["queue_wait_seconds"] is not None:
                group["waits"].append(row["queue_wait_seconds"])
            group["other"] += row["other_answers"]
            group["agreeing"] += row["agreeing_answers"]
    result = []
    for (fd_id, worker_id), group in groups.items():
        times, waits = sorted(group["times"]), sorted(group["waits"])
        result.append(
            (
                fd_id, worker_id, group["answers"], len(group["loops"]), len(group["days"]),
                statistics.median(times) if times else None,
                _percentile(times, 0.9) if times else None,
                statistics.median(waits) if waits else None,
                group["other"], group["agreeing"],
            )
        )
    return result


def _rows(aggregated: list[tuple]) -> dict[int | None, list[ReviewerRow]]:
    """Aggregated tuples as ReviewerRows by scope, with each worker's share of their scope."""
    scopes: dict[int | None, list[tuple]] = defaultdict(list)
    for row in aggregated:
        scopes[row[0]].append(row)
    result = {}
    for scope, rows in scopes.items():
        total = sum(row[2] for row in rows) or 1
        result[scope] = [
            ReviewerRow(
                worker_id=row[1], answers=row[2], loops=row[3], active_days=row[4],
                time_median=_float(row[5]), time_p90=_float(row[6]), wait_median=_float(row[7]),
                share=row[2] / total, pairs_compared=int(row[8]), pairs_agreeing=int(row[9]),
            )
            for row in rows
        ]
    return result


def _float(value) -> float | None:
    return None if value is None else float(value)


# --- the precomputed figures ---------------------------------------------------------------


def refresh_reviewer_stats(*, now: datetime | None = None) -> int:
    """Recompute every ReviewerStats row (each standard window, all and each flow definition).

    Side effect: replaces the table's rows in one transaction (readers see the old or the
    new figures, never a mix). Returns the number of rows. On PostgreSQL one aggregate
    statement per window over the answers of that window.
    """
    now = now or timezone.now()
    objects = []
    for window, delta in WINDOWS.items():
        answers = HumanAnswer.objects.all()
        if delta is not None:
            answers = answers.filter(loop_creation_time__gte=now - delta)
        for scope, rows in _rows(aggregate(answers, per_flow_definition=True)).items():
            objects.extend(
                ReviewerStats(
                    window=window, flow_definition_id=scope, worker_id=row.worker_id, answers=row.answers,
                    loops=row.loops, active_days=row.active_days, time_median=row.time_median,
                    time_p90=row.time_p90, wait_median=row.wait_median, share=row.share,
                    pairs_compared=row.pairs_compared, pairs_agreeing=row.pairs_agreeing, computed_at=now,
                )
                for row in rows
            )
    with transaction.atomic():
        ReviewerStats.objects.all().delete()
        ReviewerStats.objects.bulk_create(objects, batch_size=2000)
    return len(objects)


def reviewer_stats_computed_at() -> datetime | None:
    return ReviewerStats.objects.aggregate(at=Max("computed_at"))["at"]


def reviewer_stats_due(*, answers_written: bool, now: datetime | None = None) -> bool:
    """Whether refresh_reviewer_stats should run now: new answers and the last refresh older
    than REFRESH_MIN_SECONDS, or the figures older than A2I_STATS_MAX_AGE (windows move on)."""
    now = now or timezone.now()
    computed_at = reviewer_stats_computed_at()
    if computed_at is None:
        return answers_written or HumanAnswer.objects.exists()
    age = (now - computed_at).total_seconds()
    return (answers_written and age >= REFRESH_MIN_SECONDS) or age >= settings.A2I_STATS_MAX_AGE


# --- the pages -----------------------------------------------------------------------------


def reviewer_list(filterset: ReviewerFilter) -> ReviewerList:
    """The reviewers page's rows for a valid filterset: precomputed when the filters are a
    standard window and at most one flow definition (and a refresh has run), else computed now."""
    window = filterset.standard_window()
    if window is not None:
        ids = filterset.flow_definition_ids()
        stats = ReviewerStats.objects.filter(window=window)
        stats = stats.filter(flow_definition_id=ids[0]) if ids else stats.filter(flow_definition__isnull=True)
        stats = list(stats)
        if stats or reviewer_stats_computed_at() is not None:
            rows = [
                ReviewerRow(
                    worker_id=s.worker_id, answers=s.answers, loops=s.loops, active_days=s.active_days,
                    time_median=s.time_median, time_p90=s.time_p90, wait_median=s.wait_median, share=s.share,
                    pairs_compared=s.pairs_compared, pairs_agreeing=s.pairs_agreeing,
                )
                for s in stats
            ]
            computed_at = max((s.computed_at for s in stats), default=reviewer_stats_computed_at())
            return ReviewerList(rows, sum(row.answers for row in rows), computed_at, precomputed=True)
    rows = _rows(aggregate(filterset.qs)).get(None, [])
    return ReviewerList(rows, sum(row.answers for row in rows), timezone.now(), precomputed=False)


def export_rows(rows: list[ReviewerRow]) -> Iterator[tuple[list, list | None]]:
    """(headers, None), then (headers, values) per worker, for services.exports.stream_csv/json."""
    headers = [
        "Worker id", "Answers", "Loops", "Active days", "Loops per active day", "Median time on task (s)",
        "p90 time on task (s)", "Median queue wait (s)", "Share of answers", "Pairs compared", "Agreement",
    ]
    yield headers, None
    for row in rows:
        yield headers, [
            row.worker_id, row.answers, row.loops, row.active_days, _round(row.loops_per_day),
            _round(row.time_median), _round(row.time_p90), _round(row.wait_median), _round(row.share, 4),
            row.pairs_compared, _round(row.agreement, 4),
        ]


def _round(value, digits: int = 2):
    return None if value is None else round(value, digits)


@dataclass
class WorkerDay:
    day: date
    answers: int
    time_median: float | None


@dataclass
class WorkerPage:
    worker_id: str
    worker_sub: str
    summary: ReviewerRow | None
    recent: list[HumanAnswer]
    days: list[WorkerDay]


def worker_page(worker_id: str, filterset: ReviewerFilter, *, now: datetime | None = None) -> WorkerPage | None:
    """One worker's figures under the filters, their most recent answers and the last
    CHART_DAYS days of answers and time on task (by submission day). None when the worker
    has no answer at all. A few queries over index answer_worker_created."""
    now = now or timezone.now()
    mine = HumanAnswer.objects.filter(worker_id=worker_id)
    latest = mine.order_by("-loop_creation_time").values_list("worker_sub", flat=True).first()
    if latest is None:
        return None
    rows = _rows(aggregate(filterset.qs.filter(worker_id=worker_id))).get(None, [])
    recent = list(
        filterset.qs.filter(worker_id=worker_id)
        .select_related("loop", "flow_definition")
        .only(
            "loop__name", "loop__status", "flow_definition__name", "flow_definition__region", "index", "loop_id",
            "submission_time", "acceptance_time", "time_spent_seconds", "queue_wait_seconds", "other_answers",
            "agreeing_answers", "loop_agrees", "content_too_large", "loop_creation_time", "worker_id",
        )
        .order_by("-loop_creation_time", "-loop_id")[:RECENT_ANSWERS]
    )
    start = (now - timedelta(days=CHART_DAYS - 1)).date()
    per_day: dict[date, list] = defaultdict(list)
    counts: dict[date, int] = defaultdict(int)
    for submitted, spent in mine.filter(submission_time__gte=datetime.combine(start, datetime.min.time(), tzinfo=UTC)).values_list(
        "submission_time", "time_spent_seconds"
    ):
        day = submitted.astimezone(UTC).date()
        counts[day] += 1
        if spent is not None:
            per_day[day].append(spent)
    days = [
        WorkerDay(day, counts.get(day, 0), statistics.median(per_day[day]) if per_day.get(day) else None)
        for day in (start + timedelta(days=i) for i in range(CHART_DAYS))
    ]
    return WorkerPage(worker_id, latest or "", rows[0] if rows else None, recent, days)


@dataclass
class IngestionState:
    pending: int
    retrying: int
    failed: int
    capped: bool


def ingestion_state() -> IngestionState:
    """How many Completed loops' answers are not read yet, waiting for another attempt, or
    given up (each count stops at COUNT_CAP: counting a backlog exactly is not worth it)."""
    completed = HumanLoop.objects.filter(status=HumanLoopStatus.COMPLETED)
    counts = {
        state: completed.filter(answers_state=state).order_by()[: COUNT_CAP + 1].count()
        for state in (AnswersState.PENDING, AnswersState.RETRY, AnswersState.FAILED)
    }
    return IngestionState(
        pending=min(counts[AnswersState.PENDING], COUNT_CAP),
        retrying=min(counts[AnswersState.RETRY], COUNT_CAP),
        failed=min(counts[AnswersState.FAILED], COUNT_CAP),
        capped=any(n > COUNT_CAP for n in counts.values()),
    )


def flow_definition_names() -> dict[int, FlowDefinition]:
    return {fd.pk: fd for fd in FlowDefinition.objects.only("pk", "name", "region", "arn")}
