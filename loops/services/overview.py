"""What the overview page shows, built from FlowDefinition rows and their precomputed stats.

Read-only and cheap by design (a handful of small queries whatever the number of
loops): the heavy aggregation happens in services.stats after each sync/action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from loops.formatting import human_duration
from loops.models import AlertState, FlowDefinition, FlowDefinitionStatus, HumanLoopStatus, SyncRun, WorkerHeartbeat

# Loops older than this fraction of the task availability lifetime are about to expire.
NEAR_EXPIRY_FRACTION = 0.8
# The heartbeat task runs every 15 s (settings.CELERY_BEAT_SCHEDULE); four missed beats is stale.
HEARTBEAT_STALE_AFTER = timedelta(seconds=60)
STATUS_ORDER = [s.value for s in HumanLoopStatus]
CHART_MODES = {"24h": "Loops created per hour, last 24 hours", "30d": "Loops created per day, last 30 days"}


def sync_stale_after() -> timedelta:
    """A flow definition whose last good sync is older than this is stale (4 missed incremental syncs)."""
    return timedelta(seconds=max(4 * settings.A2I_INCREMENTAL_SYNC_INTERVAL, 120))


@dataclass
class FlowDefinitionSummary:
    flow_definition: FlowDefinition
    status_counts: list[tuple[str, int]]
    total: int
    deleted_count: int
    in_progress: int
    oldest_in_progress: datetime | None
    oldest_age_seconds: float | None
    lifetime_seconds: int | None
    lifetime_fraction: float | None
    near_expiry: bool
    completed_24h: int
    failure_rate: float | None
    failure_codes: list[tuple[str, int]]
    review_median: float | None
    review_p90: float | None
    review_samples: int
    # "answers" (exact, from the reviewers' submission times) or "observed" (by the sync);
    # reviewed of completed: the Completed loops created in the last 30 days the figure covers.
    review_source: str
    review_reviewed: int
    review_completed: int
    # Loops with two or more comparable answers in the last 30 days, and those that agree.
    agreement_compared: int
    agreement_agree: int
    last_sync_succeeded_at: datetime | None
    sync_stale: bool
    sync_failing: bool
    has_stats: bool

    @property
    def agreement_rate(self) -> float | None:
        return self.agreement_agree / self.agreement_compared if self.agreement_compared else None

    @property
    def disagreements(self) -> int:
        return self.agreement_compared - self.agreement_agree


@dataclass
class Banner:
    level: str  # "warning" | "error"
    message: str
    link: str = ""
    link_text: str = "See the sync page"


@dataclass
class CreatedSeries:
    """Loops created per period (hour or day), by current status, summed over flow definitions."""

    mode: str  # "24h" | "30d"
    title: str
    # (bucket key, label, {status: n}) in time order
    buckets: list[tuple[str, str, dict[str, int]]]

    @property
    def total(self) -> int:
        return sum(sum(counts.values()) for _key, _label, counts in self.buckets)


@dataclass
class Overview:
    summaries: list[FlowDefinitionSummary]
    banners: list[Banner]
    created: CreatedSeries
    heartbeat_at: datetime | None
    totals: dict = field(default_factory=dict)


def is_sync_stale(fd: FlowDefinition, now: datetime) -> bool:
    # Only Active flow definitions are synced; a Failed or Deleting one is not "stale".
    return fd.status == FlowDefinitionStatus.ACTIVE and (
        fd.last_sync_succeeded_at is None or now - fd.last_sync_succeeded_at > sync_stale_after()
    )


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def summarize_flow_definition(fd: FlowDefinition, *, now: datetime) -> FlowDefinitionSummary:
    stats = fd.stats or {}
    counts = stats.get("status_counts", {})
    oldest = _parse(stats.get("oldest_in_progress"))
    age = (now - oldest).total_seconds() if oldest else None
    lifetime = fd.task_availability_lifetime_seconds
    fraction = age / lifetime if (age is not None and lifetime) else None
    review = stats.get("review_seconds") or {}
    return FlowDefinitionSummary(
        flow_definition=fd,
        status_counts=[(status, counts.get(status, 0)) for status in STATUS_ORDER],
        total=stats.get("total", 0),
        deleted_count=stats.get("deleted_count", 0),
        in_progress=counts.get(HumanLoopStatus.IN_PROGRESS, 0),
        oldest_in_progress=oldest,
        oldest_age_seconds=age,
        lifetime_seconds=lifetime,
        lifetime_fraction=fraction,
        near_expiry=fraction is not None and fraction >= NEAR_EXPIRY_FRACTION,
        completed_24h=stats.get("completed_24h", 0),
        failure_rate=stats.get("failure_rate"),
        failure_codes=list((stats.get("failure_codes") or {}).items()),
        review_median=review.get("median"),
        review_p90=review.get("p90"),
        review_samples=review.get("samples", 0),
        review_source=review.get("source", "observed"),
        review_reviewed=review.get("reviewed", 0),
        review_completed=review.get("completed", 0),
        agreement_compared=(stats.get("agreement") or {}).get("compared", 0),
        agreement_agree=(stats.get("agreement") or {}).get("agree", 0),
        last_sync_succeeded_at=fd.last_sync_succeeded_at,
        sync_stale=is_sync_stale(fd, now),
        sync_failing=bool(fd.last_sync_error),
        has_stats=bool(stats),
    )


def build_overview(*, chart_mode: str = "24h", now: datetime | None = None) -> Overview:
    """Everything the overview shows. Read-only: 3 queries (flow definitions, heartbeat, last failed sync)."""
    now = now or timezone.now()
    flow_definitions = list(FlowDefinition.objects.filter(deleted_upstream=False).order_by("name", "region"))
    summaries = [summarize_flow_definition(fd, now=now) for fd in flow_definitions]
    heartbeat_at = latest_heartbeat()
    totals = {status: sum(dict(s.status_counts)[status] for s in summaries) for status in STATUS_ORDER}
    totals["all"] = sum(s.total for s in summaries)
    totals["completed_24h"] = sum(s.completed_24h for s in summaries)
    return Overview(
        summaries=summaries,
        banners=health_banners(flow_definitions, heartbeat_at, now=now),
        created=created_series(flow_definitions, mode=chart_mode, now=now),
        heartbeat_at=heartbeat_at,
        totals=totals,
    )


def sync_banners(*, now: datetime | None = None) -> list[Banner]:
    """The overview's health banners on their own (the sync page shows them), without the stats."""
    now = now or timezone.now()
    # Only the columns the banners read, not the stats and description documents.
    flow_definitions = list(
        FlowDefinition.objects.filter(deleted_upstream=False)
        .only("name", "region", "status", "last_sync_succeeded_at", "last_sync_error")
        .order_by("name", "region")
    )
    return health_banners(flow_definitions, latest_heartbeat(), now=now)


def latest_heartbeat() -> datetime | None:
    return WorkerHeartbeat.objects.order_by("-last_beat_at").values_list("last_beat_at", flat=True).first()


def health_banners(flow_definitions: list[FlowDefinition], heartbeat_at: datetime | None, *, now: datetime) -> list[Banner]:
    """Firing alerts, worker heartbeat, failing and stale syncs, failed discovery: one banner each.
    Two queries (firing alerts, discovery)."""
    banners = []
    # Index alertstate_firing.
    firing = list(
        AlertState.objects.filter(status=AlertState.Status.FIRING, rule__enabled=True)
        .order_by("rule__name").values_list("rule__name", flat=True).distinct()
    )
    if firing:
        banners.append(Banner("error", f"{len(firing)} alert rule(s) firing: {', '.join(firing[:5])}{'…' if len(firing) > 5 else ''}.",
                              "loops:alerts", "See the alerts"))
    if heartbeat_at is None:
        banners.append(Banner("error", "No Celery worker has ever reported a heartbeat: syncs are not running."))
    elif now - heartbeat_at > HEARTBEAT_STALE_AFTER:
        banners.append(
            Banner("error", f"The Celery worker's last heartbeat is {human_duration(now - heartbeat_at)} old: syncs may have stopped.")
        )
    failing = [fd for fd in flow_definitions if fd.last_sync_error]
    if failing:
        banners.append(Banner("error", f"Sync is failing for {len(failing)} flow definition(s): {_names(failing)}.", "loops:sync"))
    stale = [fd for fd in flow_definitions if is_sync_stale(fd, now) and not fd.last_sync_error]
    if stale:
        banners.append(
            Banner(
                "warning",
                f"No successful sync for over {human_duration(sync_stale_after())} for {len(stale)} flow definition(s): {_names(stale)}.",
                "loops:sync",
            )
        )
    # The latest discovery run (index syncrun_fd_started: flow_definition IS NULL), failed.
    last_discovery = SyncRun.objects.filter(flow_definition__isnull=True).exclude(outcome=SyncRun.Outcome.RUNNING).first()
    if last_discovery and last_discovery.outcome == SyncRun.Outcome.FAILED:
        banners.append(Banner("error", f"Flow definition discovery failed: {last_discovery.error[:200]}", "loops:sync"))
    return banners


def _names(flow_definitions: list[FlowDefinition]) -> str:
    return ", ".join(fd.name for fd in flow_definitions[:5]) + ("…" if len(flow_definitions) > 5 else "")


def created_series(flow_definitions: list[FlowDefinition], *, mode: str, now: datetime) -> CreatedSeries:
    """Loops created per hour (last 24 h) or per day (last 30 days), by status, from the stats buckets."""
    if mode == "30d":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
        keys = [(start + timedelta(days=i)).date().isoformat() for i in range(30)]
        labels = [k[5:] for k in keys]
        source = "created_daily"
    else:
        mode = "24h"
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
        moments = [start + timedelta(hours=i) for i in range(24)]
        keys = [m.isoformat() for m in moments]
        labels = [m.strftime("%H:00") for m in moments]
        source = "created_hourly"

    buckets = {key: dict.fromkeys(STATUS_ORDER, 0) for key in keys}
    for fd in flow_definitions:
        for key, counts in ((fd.stats or {}).get(source) or {}).items():
            if key in buckets:
                for status, n in counts.items():
                    buckets[key][status] = buckets[key].get(status, 0) + n
    series = [(key, label, buckets[key]) for key, label in zip(keys, labels, strict=True)]
    return CreatedSeries(mode=mode, title=CHART_MODES[mode], buckets=series)
