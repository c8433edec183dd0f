"""The health check behind GET /health/: database, broker, worker heartbeat, last successful sync per region.

For load balancers and container healthchecks, which read the HTTP status (200 or 503),
not the body; the body says which part is unhealthy, with nothing sensitive in it (no host
names, URLs or error messages: only the kind of error and ages).
"""

from __future__ import annotations

import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.utils import timezone
from kombu import Connection

from loops.models import FlowDefinition, FlowDefinitionStatus, WorkerHeartbeat
from loops.services.overview import HEARTBEAT_STALE_AFTER, sync_stale_after

CHECKS = ("database", "broker", "worker", "sync")
# A broker that does not answer within this many seconds is down.
BROKER_TIMEOUT = 2


def check_health(checks: tuple[str, ...] = CHECKS, *, now: datetime | None = None) -> tuple[bool, dict]:
    """Run every check; return (healthy, document). `healthy` considers only `checks`.

    Read-only. Never raises: a failing part is reported in the document. Opens one broker
    connection (closed before returning).
    """
    now = now or timezone.now()
    document = {"database": _database(), "broker": _broker()}
    if document["database"]["ok"]:
        document["worker"] = _worker(now)
        document["sync"] = _sync(now)
    else:
        # Both are read from the database.
        document["worker"] = {"ok": False, "error": "database unavailable"}
        document["sync"] = {"ok": False, "error": "database unavailable", "regions": {}}
    healthy = all(document[name]["ok"] for name in checks)
    document = {"status": "ok" if healthy else "unhealthy", "checked": list(checks), **document, "time": now.isoformat()}
    return healthy, document


def _timed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": _timed(started)}


def _broker() -> dict:
    started = time.perf_counter()
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT,
                        transport_options={**options, "socket_timeout": BROKER_TIMEOUT}) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # kombu raises transport-specific errors; all of them mean "down"
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": _timed(started)}


def _worker(now: datetime) -> dict:
    last = WorkerHeartbeat.objects.aggregate(last=Max("last_beat_at"))["last"]
    if last is None:
        return {"ok": False, "heartbeat_age_seconds": None, "error": "no heartbeat yet"}
    age = (now - last).total_seconds()
    return {"ok": age <= HEARTBEAT_STALE_AFTER.total_seconds(), "heartbeat_age_seconds": round(age, 1)}


def _sync(now: datetime) -> dict:
    """Per region, the last successful sync of its Active flow definitions (the oldest of them
    decides: one flow definition not syncing makes the region stale)."""
    regions: dict[str, dict] = {}
    limit = sync_stale_after()
    rows = FlowDefinition.objects.filter(deleted_upstream=False, status=FlowDefinitionStatus.ACTIVE).values_list(
        "region", "last_sync_succeeded_at"
    )
    for region, last in rows:
        entry = regions.setdefault(region, {"ok": True, "last_success": None, "oldest_success": None, "flow_definitions": 0})
        entry["flow_definitions"] += 1
        if last is None:
            entry["ok"] = False
            continue
        if entry["last_success"] is None or last > entry["last_success"]:
            entry["last_success"] = last
        if entry["oldest_success"] is None or last < entry["oldest_success"]:
            entry["oldest_success"] = last
        if now - last > limit:
            entry["ok"] = False
    for entry in regions.values():
        for key in ("last_success", "oldest_success"):
            entry[key] = entry[key].isoformat() if entry[key] else None
    return {"ok": all(entry["ok"] for entry in regions.values()), "stale_after_seconds": limit.total_seconds(), "regions": regions}
