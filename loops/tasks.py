"""Every Celery task: thin adapters over loops.services. They take ARNs and ids, never model instances.

This module is also where work is handed to a worker (`dispatch_batch`, `after_events`):
services know nothing of Celery.

Only transient failures are retried: A2IUnavailable (endpoint unreachable,
connection dropped) with exponential backoff, a few times. Throttling and 5xx
are already retried inside each call by botocore; an error A2I answered after
that is recorded on the SyncRun and not retried (the next scheduled run will).
"""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from loops.a2i import A2IUnavailable
from loops.models import FlowDefinition, FlowDefinitionStatus, LoopActionBatch, WorkerHeartbeat
from loops.services import actions, discovery, stats, sync
from loops.services.events import ApplyReport

logger = logging.getLogger(__name__)

TRANSIENT = {
    "autoretry_for": (A2IUnavailable,),
    "retry_backoff": 5,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 3,
}


@shared_task(soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT, time_limit=settings.CELERY_TASK_TIME_LIMIT, **TRANSIENT)
def discover_flow_definitions() -> list[str]:
    """Upsert the flow definitions of every configured region; returns their ARNs."""
    return [fd.arn for fd in discovery.discover_flow_definitions()]


@shared_task(soft_time_limit=60, time_limit=90)
def schedule_syncs(full: bool = False) -> int:
    """Queue one sync per active flow definition; returns how many were queued.

    An incremental request that waited longer than one interval is dropped
    (`expires`): the next beat queues a fresh one, so a slow worker never builds
    a backlog of identical syncs.
    """
    expires = None if full else settings.A2I_INCREMENTAL_SYNC_INTERVAL
    ids = list(
        FlowDefinition.objects.filter(deleted_upstream=False, status=FlowDefinitionStatus.ACTIVE).values_list(
            "id", flat=True
        )
    )
    for fd_id in ids:
        sync_flow_definition.apply_async((fd_id,), {"full": full}, expires=expires)
    return len(ids)


@shared_task(soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT, time_limit=settings.CELERY_TASK_TIME_LIMIT, **TRANSIENT)
def sync_flow_definition(flow_definition_id: int, full: bool = False) -> dict | None:
    """Sync one flow definition (skipped if another sync holds it); returns the SyncRun's figures."""
    try:
        run = sync.sync_flow_definition(flow_definition_id, full=full)
    except FlowDefinition.DoesNotExist:
        return None
    return {
        "sync_run": run.pk,
        "outcome": run.outcome,
        "pages": run.pages,
        "loops_seen": run.loops_seen,
        "created": run.created,
        "updated": run.updated,
        "marked_deleted": run.marked_deleted,
        "error": run.error,
    }


@shared_task(bind=True, soft_time_limit=20, time_limit=30)
def heartbeat(self) -> str:
    """Record that this worker is alive (the dashboard warns when the beat goes stale)."""
    WorkerHeartbeat.objects.update_or_create(
        worker=self.request.hostname or "unknown", defaults={"last_beat_at": timezone.now()}
    )
    return self.request.hostname or "unknown"


@shared_task(soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT, time_limit=settings.CELERY_TASK_TIME_LIMIT)
def execute_loop_action_batch(batch_id: int) -> str:
    """Carry out a stop/delete batch in the background; returns its summary.

    Idempotent: execute_batch only processes the rows still pending, so a task
    redelivered after a worker died (acks late) resumes where it stopped.
    """
    try:
        return actions.execute_batch(batch_id)
    except SoftTimeLimitExceeded:
        # A very large batch outlived the task time limit: hand the rest to a fresh task
        # rather than leave its loops pending.
        logger.warning("action batch %s hit the soft time limit; continuing in a new task", batch_id)
        execute_loop_action_batch.delay(batch_id)
        return "continued in a new task"


def dispatch_batch(batch: LoopActionBatch) -> bool:
    """Run `batch` now in this thread, or enqueue it for a worker; returns True when enqueued.

    Which one: services.actions.runs_in_background. The task is sent after the current
    transaction commits, so the worker always finds the batch.
    """
    if actions.runs_in_background(batch):
        transaction.on_commit(lambda: execute_loop_action_batch.delay(batch.pk))
        return True
    actions.execute_batch(batch.pk)
    batch.refresh_from_db()
    return False


@shared_task(soft_time_limit=60, time_limit=90)
def refresh_flow_definition_stats(flow_definition_id: int) -> bool:
    """Recompute one flow definition's overview stats; False when it no longer exists."""
    fd = FlowDefinition.objects.filter(pk=flow_definition_id).first()
    if fd is None:
        return False
    stats.refresh_flow_definition_stats(fd)
    return True


def after_events(report: ApplyReport) -> None:
    """Queue what applied events call for: discovery of flow definitions first heard of
    from an event, and a stats refresh of each flow definition they changed, debounced.

    Never raises: the events are applied whatever happens here, and a sender must not
    deliver them again because the broker is down (the next sync refreshes the stats).
    """
    try:
        if report.to_discover:
            discover_flow_definitions.delay()
        refresh_stats_soon(report.flow_definition_ids)
    except Exception:  # the broker's errors come from several libraries (kombu, redis, OSError)
        logger.exception("could not queue the follow-up work of applied events")


def refresh_stats_soon(flow_definition_ids) -> None:
    """Refresh these flow definitions' stats A2I_EVENTS_STATS_DELAY seconds from now, once
    for every event of that window: the first caller of a window queues the refresh (a
    cache key that lives as long as the window says it is queued), the others rely on it.
    It runs after every event that relied on it, so none is left out.

    The key lives in Django's cache, which is per process unless CACHES names a shared
    one: each web or consumer process then queues at most one refresh per flow
    definition and window.
    """
    delay = settings.A2I_EVENTS_STATS_DELAY
    for fd_id in flow_definition_ids:
        if cache.add(f"loops:events:stats-queued:{fd_id}", True, timeout=delay):
            refresh_flow_definition_stats.apply_async((fd_id,), countdown=delay)
