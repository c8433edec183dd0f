"""Every Celery task: thin adapters over loops.services. They take ARNs and ids, never model instances.

This module is also where work is handed to a worker (`dispatch_batch`): services
know nothing of Celery.

Only transient failures are retried: A2IUnavailable (endpoint unreachable,
connection dropped) with exponential backoff, a few times. Throttling and 5xx
are already retried inside each call by botocore; an error A2I answered after
that is recorded on the SyncRun and not retried (the next scheduled run will).
"""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from loops import a2i
from loops.a2i import A2IUnavailable
from loops.models import FlowDefinition, FlowDefinitionStatus, LoopAction, LoopActionBatch, WorkerHeartbeat
from loops.services import actions, discovery, settlement, sync

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
    """Carry out a stop/delete batch in the background (preparing it first if needed); returns its summary.

    Idempotent: execute_batch only processes the rows still pending, so a task
    redelivered after a worker died (acks late) resumes where it stopped. Loops whose
    outcome is unknown are described later by settle_loop_actions.
    """
    try:
        summary = actions.execute_batch(batch_id)
    except SoftTimeLimitExceeded:
        # A very large batch outlived the task time limit: hand the rest to a fresh task
        # rather than leave its loops pending.
        logger.warning("action batch %s hit the soft time limit; continuing in a new task", batch_id)
        execute_loop_action_batch.delay(batch_id)
        return "continued in a new task"
    _settle_later(batch_id)
    return summary


@shared_task(soft_time_limit=300, time_limit=330, **TRANSIENT)
def settle_loop_actions(batch_id: int) -> int:
    """Describe the loops of a batch whose stop or delete got no answer, and settle them; returns how many."""
    return settlement.describe_and_settle(batch_id)


def _settle_later(batch_id: int) -> None:
    if LoopAction.objects.filter(batch_id=batch_id, outcome=LoopAction.Outcome.UNKNOWN).exists():
        settle_loop_actions.apply_async((batch_id,), countdown=settings.A2I_ACTION_SETTLE_MARGIN_SECONDS)


def dispatch_batch(batch: LoopActionBatch) -> bool:
    """Run `batch` now in this request, or enqueue it for a worker; returns True when (partly) enqueued.

    A batch being prepared, or one that runs in the background
    (services.actions.runs_in_background), goes to the worker. Otherwise it runs here,
    within A2I_ACTION_INLINE_SECONDS, with the interactive client; loops left when the
    time is spent or A2I throttles go to the worker. Tasks are sent after the current
    transaction commits, so the worker always finds the batch.
    """
    if batch.state == LoopActionBatch.State.PREPARING or actions.runs_in_background(batch):
        transaction.on_commit(lambda: execute_loop_action_batch.delay(batch.pk))
        return True
    finished = actions.execute_batch_inline(batch.pk, budget_seconds=settings.A2I_ACTION_INLINE_SECONDS)
    batch.refresh_from_db()
    if not finished:
        transaction.on_commit(lambda: execute_loop_action_batch.delay(batch.pk))
        return True
    batch_id = batch.pk
    transaction.on_commit(lambda: _settle_later(batch_id))
    return False


@worker_shutdown.connect
@worker_process_shutdown.connect
def close_aws_clients(**kwargs) -> None:
    """Close the cached boto3 clients (their connection pools) when a worker or pool process stops."""
    closed = a2i.close_clients()
    logger.info("closed %d AWS client%s at worker shutdown", closed, "" if closed == 1 else "s")
