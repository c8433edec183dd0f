"""Per-flow-definition aggregates for the overview, stored on FlowDefinition.stats.

Computing them per request would scan up to a million loops; they are refreshed
instead after every sync and every action, one flow definition at a time, so the
overview reads ten small JSON documents. Every query here is served by an index
of models.py (noted next to each one) and touches one flow definition's loops only.

The stored document (all times ISO-8601 UTC strings, version 2):

    {
      "version": 2,
      "computed_at": "...",
      "status_counts": {"InProgress": 12, "Completed": 80, ...},   # not deleted upstream
      "deleted_count": 3,                                          # deleted upstream
      "total": 95,
      "oldest_in_progress": "..." | null,                          # creation_time
      "completed_24h": 7,                                          # completions (A2I's or observed time)
      "failure_codes": {"Expired": 2, "InternalError": 1},
      "failure_rate": 0.04 | null,                                 # Failed / (Completed + Failed)
      "review_seconds": {"median": 130.0, "p90": 901.5, "samples": 70,  # see _review_seconds
                         "source": "answers" | "observed", "reviewed": 70, "completed": 75},
      "agreement": {"compared": 40, "agree": 36},        # loops with 2+ answers, last 30 days
      "created_hourly": {"2026-11-26T17:00:00+00:00": {"Completed": 3, ...}, ...},  # last 24 h
      "created_daily": {"2026-11-26": {"Completed": 40, ...}, ...},                  # last 30 days
    }
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.db import connection
from django.db.models import CharField, Count, Exists, OuterRef, Q, Value
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from loops.models import FlowDefinition, HumanAnswer, HumanLoop, HumanLoopStatus, HumanLoopStatusChange
from loops.services import page_cache

Source = HumanLoopStatusChange.Source

STATS_VERSION = 3
# Review times are taken from completions observed in this window: recent enough to
# describe the current workforce, long enough to have samples on a quiet flow definition.
REVIEW_WINDOW = timedelta(days=30)
# ... over at most this many of the most recent observed completions, so the cost of a
# refresh stays bounded whatever the volume (a percentile over every completion of a big
# flow definition grows with it). 2,000 samples pin p90 to within about 1 %.
REVIEW_SAMPLE = 2_000
ALL = Count("*")
# History rows that say when a loop changed (A2I's time or observed), as opposed to a
# sync's first sight of a loop in the state it already had: exactly the rows of the partial
# index change_transition_observed, so a filter by it (with to_status and an observed_at
# range) reads that index only.
TRANSITION = Q(from_status__gt="") | Q(source=Source.EVENT)
CHART_DAYS = 30


def refresh_flow_definition_stats(flow_definition: FlowDefinition) -> dict:
    """Recompute and store `flow_definition.stats` (and `stats_refreshed_at`).

    Side effect: one UPDATE of the flow definition row; the instance passed in is
    updated too. Read-only otherwise. Never raises for empty data (a flow definition
    without loops gets zeros and nulls). About 6 indexed queries over this flow
    definition's loops; well under a second for 100,000 loops on PostgreSQL.
    """
    now = timezone.now()
    stats = compute_flow_definition_stats(flow_definition.pk, now=now)
    FlowDefinition.objects.filter(pk=flow_definition.pk).update(stats=stats, stats_refreshed_at=now)
    page_cache.data_changed()
    flow_definition.stats, flow_definition.stats_refreshed_at = stats, now
    return stats


def compute_flow_definition_stats(flow_definition_id: int, *, now) -> dict:
    """Return the stats document for one flow definition (see module docstring). Read-only."""
    loops = HumanLoop.objects.filter(flow_definition_id=flow_definition_id)
    live = loops.filter(deleted_upstream=False)

    status_counts = counts_by_status(live)
    # Partial index loop_fd_deleted holds the deleted rows only.
    deleted_count = loops.filter(deleted_upstream=True).order_by().count()

    # Index loop_fd_status_created: first entry of (fd, InProgress) in creation order.
    oldest = (
        live.filter(status=HumanLoopStatus.IN_PROGRESS)
        .order_by("creation_time")
        .values_list("creation_time", flat=True)
        .first()
    )

    # Completions in the last 24 hours: transitions to Completed observed (or sent by A2I)
    # in them, plus a sync's first sight of a loop already Completed when the loop was
    # created in them; otherwise the first sync of an old account would count its history.
    cutoff = now - timedelta(hours=24)
    completed_24h = (
        HumanLoopStatusChange.objects.filter(
            TRANSITION, to_status=HumanLoopStatus.COMPLETED, observed_at__gte=cutoff,
            loop__flow_definition_id=flow_definition_id,
        ).count()
        + first_sight_of_recent_loops([flow_definition_id], [HumanLoopStatus.COMPLETED], since=cutoff).count()
    )

    failure_codes = dict(
        live.filter(status=HumanLoopStatus.FAILED)
        .order_by()
        .values_list("failure_code")
        .annotate(n=ALL)
        .values_list("failure_code", "n")
    )
    failure_codes = {(code or "(none)"): n for code, n in sorted(failure_codes.items(), key=lambda kv: -kv[1])}
    completed = status_counts.get(HumanLoopStatus.COMPLETED, 0)
    failed = status_counts.get(HumanLoopStatus.FAILED, 0)
    failure_rate = failed / (completed + failed) if (completed + failed) else None

    return {
        "version": STATS_VERSION,
        "computed_at": now.isoformat(),
        "status_counts": status_counts,
        "deleted_count": deleted_count,
        "total": sum(status_counts.values()),
        "oldest_in_progress": oldest.isoformat() if oldest else None,
        "completed_24h": completed_24h,
        "failure_codes": failure_codes,
        "failure_rate": failure_rate,
        "review_seconds": _review_seconds(flow_definition_id, since=now - REVIEW_WINDOW),
        "agreement": _agreement(flow_definition_id, since=now - REVIEW_WINDOW),
        **_creation_buckets(live, now=now),
    }


def counts_by_status(loops) -> dict[str, int]:
    """Loops of the queryset `loops` (of one flow definition, not deleted upstream) by
    status, the statuses with none left out. One statement, so one snapshot.

    Completed loops are in neither status index (models.HumanLoop): their count is the
    total, an index-only count over loop_fd_created, minus the other statuses' counts,
    index-only over loop_fd_status_created. COUNT(*), not COUNT(id): id is in neither
    index, and referencing it forces a heap visit per row (an order of magnitude slower).
    """
    others = loops.exclude(status=HumanLoopStatus.COMPLETED).order_by().values_list("status").annotate(n=ALL)
    total = loops.order_by().annotate(total=Value("", output_field=CharField())).values_list("total").annotate(n=ALL)
    counts = dict(others.union(total, all=True))
    completed = counts.pop("") - sum(counts.values())
    if completed:
        counts[HumanLoopStatus.COMPLETED] = completed
    return counts


def _review_seconds(flow_definition_id: int, *, since) -> dict:
    """Median and p90 review time of the flow definition's loops created since `since`.

    Exact where the answers were read (services.answers): creation to the last answer's
    submission, over the most recent REVIEW_SAMPLE reviewed loops ("source": "answers").
    "reviewed" of "completed" says how many of the Completed loops created in the window
    the figure covers. Before any answer is read, the observed figure instead (below).
    Index loop_fd_reviewed (index-only) and counts_by_status.
    """
    loops = HumanLoop.objects.filter(flow_definition_id=flow_definition_id, deleted_upstream=False, creation_time__gte=since)
    completed = counts_by_status(loops).get(HumanLoopStatus.COMPLETED, 0)
    count = loops.filter(review_seconds__isnull=False).order_by().count()
    figure = review_time(flow_definition_id, since=since)
    return {**figure, "reviewed": count, "completed": completed}


def review_time(flow_definition_id: int, *, since) -> dict:
    """Median and p90 review time of the loops created since `since`, without the coverage
    counts: {"median", "p90", "samples", "source"}, "source" being "answers" (exact) or
    "observed" (before any answer of the window is read). Read-only; one or two queries
    over index ranges (loop_fd_reviewed, index-only; else loop_fd_status_created).

    The alert rules call this for their own windows; the stats document holds the 30-day one.
    """
    durations = sorted(
        HumanLoop.objects.filter(
            flow_definition_id=flow_definition_id, deleted_upstream=False, creation_time__gte=since,
            review_seconds__isnull=False,
        )
        .order_by("-creation_time")
        .values_list("review_seconds", flat=True)[:REVIEW_SAMPLE]
    )
    if not durations:
        return {**_observed_review_seconds(flow_definition_id, since=since), "source": "observed"}
    return {
        "median": statistics.median(durations),
        "p90": _percentile(durations, 0.9),
        "samples": len(durations),
        "source": "answers",
    }


def _agreement(flow_definition_id: int, *, since) -> dict:
    """Loops created since `since` whose answers could be compared (2+ answers), and how many agree.

    One row per loop: the first answer carries the loop's agreement. Index answer_fd_created.
    """
    rows = dict(
        HumanAnswer.objects.filter(
            flow_definition_id=flow_definition_id, loop_creation_time__gte=since, index=0, loop_agrees__isnull=False
        )
        .order_by()
        .values_list("loop_agrees")
        .annotate(n=ALL)
        .values_list("loop_agrees", "n")
    )
    return {"compared": sum(rows.values()), "agree": rows.get(True, 0)}


def _observed_review_seconds(flow_definition_id: int, *, since) -> dict:
    """Median and p90 of (completion - creation), over the REVIEW_SAMPLE most recently
    created Completed loops of the window whose completion time is known, used until the
    answers of the flow definition's loops are read.

    The completion time is A2I's where an EventBridge event gave it (source "event"),
    else when the dashboard observed it. A sync's first sight of a loop that was already
    Completed (empty from_status, e.g. the first full sync) says when we looked, not
    when the reviewer finished, so it is left out; an event's first sight is exact.
    Driven from this flow definition's loops (index loop_fd_created, newest first, nearly
    all of them Completed, then each loop's history through change_loop_observed): a scan of the
    window's completions across every flow definition cost 0.3 s a flow definition at
    1,000,000 loops, too much for an alert rule evaluated every minute over 50 of them.
    """
    changes = (
        HumanLoopStatusChange.objects.filter(
            TRANSITION,
            to_status=HumanLoopStatus.COMPLETED,
            loop__flow_definition_id=flow_definition_id,
            loop__status=HumanLoopStatus.COMPLETED,
            loop__deleted_upstream=False,
            loop__creation_time__gte=since,
        )
        .order_by("-loop__creation_time")
        .values_list("observed_at", "loop__creation_time")[:REVIEW_SAMPLE]
    )
    if connection.vendor == "postgresql":
        sql, params = changes.query.sql_with_params()
        # The values_list SQL selects (observed_at, creation_time); aggregate it in the
        # database instead of shipping the rows to Python.
        query = f"""
            SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY s),
                   count(*)
            FROM (SELECT EXTRACT(EPOCH FROM (t.c0 - t.c1)) AS s
                  FROM ({sql}) AS t(c0, c1)) AS d
        """
        with connection.cursor() as cursor:
            cursor.execute(query, params)
            median, p90, samples = cursor.fetchone()
        return {
            "median": float(median) if median is not None else None,
            "p90": float(p90) if p90 is not None else None,
            "samples": samples,
        }
    durations = sorted(
        (observed - created).total_seconds()
        for observed, created in changes
    )
    if not durations:
        return {"median": None, "p90": None, "samples": 0}
    return {
        "median": statistics.median(durations),
        "p90": _percentile(durations, 0.9),
        "samples": len(durations),
    }


def first_sight_of_recent_loops(flow_definition_ids, statuses, *, since):
    """Loops created since `since` that a sync first saw, since then, already in one of `statuses`.

    A sync's first sight writes no history row (services.sync_sql): the loop was first
    seen at first_seen_at, and a loop with no history row at all is still in the status
    it was first seen in. Rows written before that (and a loop re-created under a reused
    name) record their first sight as a row with an empty from_status, outside index
    change_transition_observed. Both are found from the loops' side: the loops created in
    the window (a range of index loop_fd_created, or of loop_fd_status_created when
    Completed is not among `statuses`), each with its history through index
    change_loop_observed. Terminal statuses only. A queryset of HumanLoop (count it, or
    group it by flow definition).
    """
    first_sight_row = HumanLoopStatusChange.objects.filter(
        loop=OuterRef("pk"), from_status="", to_status__in=statuses, observed_at__gte=since
    ).exclude(source=Source.EVENT)
    any_row = HumanLoopStatusChange.objects.filter(loop=OuterRef("pk"))
    return HumanLoop.objects.filter(
        flow_definition_id__in=flow_definition_ids, status__in=statuses, deleted_upstream=False,
        creation_time__gte=since,
    ).filter(Exists(first_sight_row) | (Q(first_seen_at__gte=since) & ~Exists(any_row))).order_by()


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Linear interpolation, the same definition as PostgreSQL's percentile_cont."""
    position = (len(sorted_values) - 1) * fraction
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


def _creation_buckets(live, *, now) -> dict:
    """Loops created per hour (last 24 h) and per day (last 30 days), by current status.

    One range scan of index loop_fd_created per granularity.
    """
    hourly: dict[str, dict[str, int]] = {}
    hour_start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = (
        live.filter(creation_time__gte=hour_start)
        .order_by()
        .annotate(bucket=TruncHour("creation_time"))
        .values_list("bucket", "status")
        .annotate(n=ALL)
        .values_list("bucket", "status", "n")
    )
    for bucket, status, n in rows:
        hourly.setdefault(bucket.isoformat(), {})[status] = n

    daily: dict[str, dict[str, int]] = {}
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=CHART_DAYS - 1)
    rows = (
        live.filter(creation_time__gte=day_start)
        .order_by()
        .annotate(bucket=TruncDay("creation_time"))
        .values_list("bucket", "status")
        .annotate(n=ALL)
        .values_list("bucket", "status", "n")
    )
    for bucket, status, n in rows:
        daily.setdefault(bucket.date().isoformat(), {})[status] = n
    return {"created_hourly": hourly, "created_daily": daily}

