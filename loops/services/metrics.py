"""Prometheus metrics, computed from the database when /metrics is scraped.

A custom collector (prometheus_client's documented way to export values held elsewhere):
every web process reads the same database, so any of them answers with the one truth, and
nothing is kept in process memory. A scrape is cheap by construction:

- per flow definition: the precomputed statistics (services.stats) and the sync columns of
  FlowDefinition, one query for all of them; the expiring counts, one query over index
  loop_fd_status_created that reads only the expiring loops;
- the `_total` counters (sync runs, actions, received events): running totals kept in
  MetricRollup by the evaluation tick (`roll_up_counters`), plus the rows written since,
  a range of the primary key;
- firing alerts: the firing states (index alertstate_firing).

No loop names or worker ids are labels: every label has a bounded set of values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count, Max, Min, Model, QuerySet
from django.db.models.fields.json import KeyTransform
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

from loops.formatting import as_datetime
from loops.models import (
    AlertRule,
    AlertState,
    FlowDefinition,
    HumanLoopStatus,
    LoopAction,
    LoopActionBatch,
    MetricRollup,
    ReceivedEvent,
    SyncRun,
)
from loops.services.alerts import expiring_counts, expiring_cutoffs
from loops.services.overview import NEAR_EXPIRY_FRACTION

FD_LABELS = ["flow_definition", "region"]
# A row still unsettled (a sync still running, an action still pending) after this long is
# counted as it stands, so one stuck row cannot hold the rollup back forever.
SETTLE_LIMIT = timedelta(days=1)


@dataclass(frozen=True)
class CounterSource:
    """A table whose rows are counted by label values into one `_total` counter."""

    model: type[Model]
    labels: tuple[str, ...]
    # Rows that may still change their labels (created since `since`); None: rows never change.
    unsettled: Callable[[datetime], QuerySet] | None


SOURCES = {
    "sync_runs": CounterSource(
        SyncRun, ("kind", "outcome"),
        # Index syncrun_outcome_started.
        lambda since: SyncRun.objects.filter(outcome=SyncRun.Outcome.RUNNING, started_at__gte=since),
    ),
    "actions": CounterSource(
        LoopAction, ("action", "outcome"),
        # Pending rows of unfinished batches (index action_batch_outcome).
        lambda since: LoopAction.objects.filter(
            outcome=LoopAction.Outcome.PENDING, created_at__gte=since,
            batch__state__in=[LoopActionBatch.State.PENDING, LoopActionBatch.State.RUNNING],
        ),
    ),
    # Received EventBridge events by result (applied, duplicate, stale); a rejected request
    # writes no row, so it is not counted here. Rows never change once written.
    "events": CounterSource(ReceivedEvent, ("result",), None),
}


def _key(values) -> str:
    return "|".join(str(value) for value in values)


def roll_up_counters(now: datetime | None = None) -> dict[str, int]:
    """Add the settled rows written since the last rollup to each source's running totals.

    Side effect: one MetricRollup row per source, updated under a row lock (two ticks at
    once add nothing twice). Returns the rows added per source. Each step reads a range of
    the primary key, never the whole table.
    """
    now = now or timezone.now()
    added = {}
    for name, source in SOURCES.items():
        model = source.model
        with transaction.atomic():
            MetricRollup.objects.get_or_create(source=name)
            rollup = MetricRollup.objects.select_for_update().get(source=name)
            newest = model.objects.aggregate(newest=Max("pk"))["newest"] or 0
            upto = newest
            if source.unsettled is not None:
                first_unsettled = source.unsettled(now - SETTLE_LIMIT).aggregate(first=Min("pk"))["first"]
                if first_unsettled is not None:
                    upto = min(upto, first_unsettled - 1)
            if upto <= rollup.upto_id:
                added[name] = 0
                continue
            counts = Counter(rollup.counts)
            rows = _counts(model.objects.filter(pk__gt=rollup.upto_id, pk__lte=upto), source.labels)
            counts.update(rows)
            rollup.counts, rollup.upto_id, rollup.updated_at = dict(counts), upto, now
            rollup.save(update_fields=["counts", "upto_id", "updated_at"])
            added[name] = sum(rows.values())
    return added


def _counts(queryset: QuerySet, labels: tuple[str, ...]) -> Counter:
    rows = queryset.order_by().values_list(*labels).annotate(n=Count("*"))
    return Counter({_key(row[:-1]): row[-1] for row in rows})


def counter_totals(name: str) -> dict[tuple[str, ...], int]:
    """Label values -> total rows for one source: its rollup plus the rows after it."""
    source = SOURCES[name]
    model = source.model
    rollup = MetricRollup.objects.filter(source=name).first()
    totals = Counter(rollup.counts if rollup else {})
    totals.update(_counts(model.objects.filter(pk__gt=rollup.upto_id if rollup else 0), source.labels))
    return {tuple(key.split("|")): n for key, n in totals.items()}


class DashboardCollector:
    """Every a2i_* metric, read from the database at each scrape."""

    def collect(self):
        now = timezone.now()
        # Only the three keys of the statistics document a scrape reads: the whole document
        # (its 30-day and 24-hour charts) took a tenth of a scrape's time to decode.
        fds = list(
            FlowDefinition.objects.filter(deleted_upstream=False)
            .order_by("name", "region")
            .only("pk", "name", "region", "task_availability_lifetime_seconds", "last_sync_succeeded_at")
            .annotate(
                status_counts=KeyTransform("status_counts", "stats"),
                oldest_in_progress=KeyTransform("oldest_in_progress", "stats"),
                review_seconds=KeyTransform("review_seconds", "stats"),
            )
        )
        yield from self._loops(fds, now)
        yield from self._counters()
        yield self._alerts()

    def _loops(self, fds, now):
        loops = GaugeMetricFamily("a2i_human_loops", "Human loops by current status (not deleted upstream), "
                                  "as of the last statistics refresh.", labels=[*FD_LABELS, "status"])
        expiring = GaugeMetricFamily("a2i_human_loops_expiring", f"InProgress loops older than "
                                     f"{NEAR_EXPIRY_FRACTION:.0%} of the task availability lifetime.", labels=FD_LABELS)
        oldest = GaugeMetricFamily("a2i_human_loop_oldest_in_progress_age_seconds", "Age of the oldest InProgress "
                                   "loop (0 when there is none), as of the last statistics refresh.", labels=FD_LABELS)
        review = GaugeMetricFamily("a2i_review_time_seconds", "Review time (observed completion minus creation) "
                                   "of recent completions, by quantile.", labels=[*FD_LABELS, "quantile"])
        synced = GaugeMetricFamily("a2i_sync_last_success_timestamp_seconds", "When the last successful sync of the "
                                   "flow definition finished (Unix time).", labels=FD_LABELS)
        expiring_now = expiring_counts(expiring_cutoffs(fds, NEAR_EXPIRY_FRACTION, now))
        for fd in fds:
            labels = [fd.name, fd.region]
            counts = fd.status_counts or {}
            for status in HumanLoopStatus:
                loops.add_metric([*labels, status.value], counts.get(status.value, 0))
            if fd.task_availability_lifetime_seconds:
                expiring.add_metric(labels, expiring_now.get(fd.pk, 0))
            started = as_datetime(fd.oldest_in_progress)
            oldest.add_metric(labels, max((now - started).total_seconds(), 0.0) if started else 0.0)
            times = fd.review_seconds or {}
            for quantile, key in (("0.5", "median"), ("0.9", "p90")):
                if times.get(key) is not None:
                    review.add_metric([*labels, quantile], times[key])
            if fd.last_sync_succeeded_at:
                synced.add_metric(labels, fd.last_sync_succeeded_at.timestamp())
        return [loops, expiring, oldest, review, synced]

    def _counters(self):
        described = {
            "sync_runs": ("a2i_sync_runs", "Sync runs (discovery, full, incremental) by outcome."),
            "actions": ("a2i_actions", "Stop and delete attempts on single loops, by outcome."),
            "events": ("a2i_events_received", "EventBridge events received, by result."),
        }
        for name, (metric, text) in described.items():
            totals = counter_totals(name)
            family = CounterMetricFamily(metric, text, labels=list(SOURCES[name].labels))
            for labels, n in sorted(totals.items()):
                family.add_metric(list(labels), n)
            yield family

    def _alerts(self):
        family = GaugeMetricFamily("a2i_alerts_firing", "Scopes (flow definitions, or the worker) for which the "
                                   "rule is firing.", labels=["rule"])
        firing = dict(
            AlertState.objects.filter(status=AlertState.Status.FIRING).order_by()
            .values_list("rule_id").annotate(n=Count("*"))
        )
        # Summed by name: two rules of one name would otherwise give two series with one label set.
        by_name = Counter()
        for pk, name in AlertRule.objects.filter(enabled=True).values_list("pk", "name"):
            by_name[name] += firing.get(pk, 0)
        for name in sorted(by_name):
            family.add_metric([name], by_name[name])
        return family


def registry() -> CollectorRegistry:
    """A registry with only our collector (no process or platform metrics of one web process)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector())
    return registry
