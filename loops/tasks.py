"""Celery tasks: thin adapters over loops.services. They take ARNs and ids, never model instances.

Only transient failures are retried: A2IUnavailable (endpoint unreachable,
connection dropped) with exponential backoff, a few times. Throttling and 5xx
are already retried inside each call by botocore; an error A2I answered after
that is recorded on the SyncRun and not retried (the next scheduled run will).
"""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from loops.a2i import A2IUnavailable
from loops.models import FlowDefinition, FlowDefinitionStatus, WorkerHeartbeat
from loops.services import sync

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
    return [fd.arn for fd in sync.discover_flow_definitions()]


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
