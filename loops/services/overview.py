"""What the overview page shows, built from FlowDefinition rows and their precomputed stats.

Read-only and cheap by design (a handful of small queries whatever the number of
loops): the heavy aggregation happens in services.stats after each sync/action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from loops.models import FlowDefinition, FlowDefinitionStatus, HumanLoopStatus, SyncRun, WorkerHeartbeat
from loops.templatetags.loops_extras import human_duration

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
    last_sync_succeeded_at: datetime | None
    sync_stale: bool
    sync_failing: bool
    has_stats: bool


@dataclass
class Banner:
    level: str  # "warning" | "error"
    message: str
    link: str = ""


@dataclass
class Overview:
    summaries: list[FlowDefinitionSummary]
    banners: list[Banner]
    chart: dict
    heartbeat_at: datetime | None
    totals: dict = field(default_factory=dict)


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
    stale_after = sync_stale_after()
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
        last_sync_succeeded_at=fd.last_sync_succeeded_at,
        # Only Active flow definitions are synced; a Failed or Deleting one is not "stale".
        sync_stale=fd.status == FlowDefinitionStatus.ACTIVE
        and (fd.last_sync_succeeded_at is None or now - fd.last_sync_succeeded_at > stale_after),
        sync_failing=bool(fd.last_sync_error),
        has_stats=bool(stats),
    )


def build_overview(*, chart_mode: str = "24h", now: datetime | None = None) -> Overview:
    """Everything the overview shows. Read-only: 3 queries (flow definitions, heartbeat, last failed sync)."""
    now = now or timezone.now()
    flow_definitions = list(FlowDefinition.objects.filter(deleted_upstream=False).order_by("name", "region"))
    summaries = [summarize_flow_definition(fd, now=now) for fd in flow_definitions]

    heartbeat_at = WorkerHeartbeat.objects.order_by("-last_beat_at").values_list("last_beat_at", flat=True).first()
    banners = []
    if heartbeat_at is None:
        banners.append(Banner("error", "No Celery worker has ever reported a heartbeat: syncs are not running."))
    elif now - heartbeat_at > HEARTBEAT_STALE_AFTER:
        banners.append(
            Banner("error", f"The Celery worker's last heartbeat is {_ago(now - heartbeat_at)} old: syncs may have stopped.")
        )
    failing = [s.flow_definition for s in summaries if s.sync_failing]
    if failing:
        names = ", ".join(fd.name for fd in failing[:5]) + ("…" if len(failing) > 5 else "")
        banners.append(Banner("error", f"Sync is failing for {len(failing)} flow definition(s): {names}.", "loops:sync"))
    stale = [s.flow_definition for s in summaries if s.sync_stale and not s.sync_failing]
    if stale:
        names = ", ".join(fd.name for fd in stale[:5]) + ("…" if len(stale) > 5 else "")
        banners.append(
            Banner(
                "warning",
                f"No successful sync for over {_ago(sync_stale_after())} for {len(stale)} flow definition(s): {names}.",
                "loops:sync",
            )
        )
    # The latest discovery run (index syncrun_fd_started: flow_definition IS NULL), failed.
    last_discovery = SyncRun.objects.filter(flow_definition__isnull=True).exclude(outcome=SyncRun.Outcome.RUNNING).first()
    if last_discovery and last_discovery.outcome == SyncRun.Outcome.FAILED:
        banners.append(Banner("error", f"Flow definition discovery failed: {last_discovery.error[:200]}", "loops:sync"))

    totals = {status: sum(dict(s.status_counts)[status] for s in summaries) for status in STATUS_ORDER}
    totals["all"] = sum(s.total for s in summaries)
    totals["completed_24h"] = sum(s.completed_24h for s in summaries)
    return Overview(
        summaries=summaries,
        banners=banners,
        chart=build_chart(flow_definitions, mode=chart_mode, now=now),
        heartbeat_at=heartbeat_at,
        totals=totals,
    )


def _ago(delta: timedelta) -> str:
    return human_duration(delta)


# --- chart ----------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT, CHART_PAD_LEFT, CHART_PAD_BOTTOM, CHART_PAD_TOP = 720, 220, 44, 22, 10


def build_chart(flow_definitions: list[FlowDefinition], *, mode: str, now: datetime) -> dict:
    """Bars stacked by status, as SVG coordinates, summed over flow definitions' stats buckets."""
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

    peak = max((sum(b.values()) for b in buckets.values()), default=0)
    scale_max = _nice_ceiling(peak)
    plot_w = CHART_WIDTH - CHART_PAD_LEFT
    plot_h = CHART_HEIGHT - CHART_PAD_BOTTOM - CHART_PAD_TOP  # bars span y = TOP .. TOP + plot_h
    slot = plot_w / len(keys)
    bar_w = max(slot * 0.75, 1)
    bars = []
    for index, (key, label) in enumerate(zip(keys, labels)):
        x = CHART_PAD_LEFT + index * slot + (slot - bar_w) / 2
        y = CHART_PAD_TOP + plot_h
        segments = []
        for status in STATUS_ORDER:
            n = buckets[key].get(status, 0)
            if not n:
                continue
            h = plot_h * n / scale_max if scale_max else 0
            y -= h
            segments.append({"status": status, "n": n, "y": round(y, 2), "h": round(h, 2)})
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "label": label,
                "show_label": index % (3 if mode == "24h" else 5) == 0,
                "label_x": round(x + bar_w / 2, 2),
                "total": sum(buckets[key].values()),
                "segments": segments,
                "key": key,
            }
        )
    ticks = [
        {"value": scale_max * i // 4, "y": round(CHART_PAD_TOP + plot_h - plot_h * i / 4, 2)} for i in range(5)
    ] if scale_max else []
    return {
        "mode": mode,
        "title": CHART_MODES[mode],
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "plot_h": plot_h,
        "plot_top": CHART_PAD_TOP,
        "pad_left": CHART_PAD_LEFT,
        "bars": bars,
        "ticks": ticks,
        "total": sum(bar["total"] for bar in bars),
        "statuses": STATUS_ORDER,
    }


def _nice_ceiling(value: int) -> int:
    """A round axis maximum >= value (1, 2, 5 x 10^n), divisible by 4 where possible."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (1, 2, 4, 5, 8):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10
