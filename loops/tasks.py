"""Every Celery task: thin adapters over loops.services. They take ARNs and ids, never model instances.

This module is also where work is handed to a worker (`dispatch_batch`, `after_events`):
services know nothing of Celery.

Only transient failures are retried: A2IUnavailable (endpoint unreachable,
connection dropped) with exponential backoff, a few times. Throttling and 5xx
are already retried inside each call by botocore; an error A2I answered after
that is recorded on the SyncRun and not retried (the next scheduled run will).
"""

import logging
import time
from datetime import datetime

from celery import chord, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_shutdown, worker_shutdown
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from loops import a2i
from loops.a2i import A2IUnavailable
from loops.models import FlowDefinition, FlowDefinitionStatus, LoopAction, LoopActionBatch, WorkerHeartbeat
from loops.services import actions, alerts, answers, discovery, metrics, notify, reviewers, settlement, stats, sync, sync_distributed
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
    """Sync one flow definition (skipped if another sync holds it); returns the SyncRun's figures.

    A full sync with A2I_SYNC_DISTRIBUTE on hands its creation-time ranges to the workers
    as a chord (one sync_slice task per range, then finish_distributed_sync) and returns
    at once with the run "running".
    """
    try:
        if full and settings.A2I_SYNC_DISTRIBUTE:
            plan = sync_distributed.plan_distributed_sync(flow_definition_id)
            if plan.ranges:
                header = [sync_slice.s(plan.run.pk, _iso(lo), _iso(hi)) for lo, hi in plan.ranges]
                chord(header)(finish_distributed_sync.s(plan.run.pk))
            run = plan.run
        else:
            run = sync.sync_flow_definition(flow_definition_id, full=full)
    except FlowDefinition.DoesNotExist:
        return None
    if run.created or run.updated:
        # Loops may have become Completed: read their answers, in one batched task (it
        # finds every due loop itself; a run already going makes this one return at once).
        ingest_answers.apply_async(expires=settings.A2I_ANSWERS_INTERVAL)
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


# One run reads for at most this long, then hands the rest to a fresh task, so a backfill
# of a million loops never holds a worker slot for long and syncs keep their turn.
INGEST_RUN_SECONDS = 120


@shared_task(soft_time_limit=INGEST_RUN_SECONDS + 120, time_limit=INGEST_RUN_SECONDS + 180)
def ingest_answers() -> dict:
    """Read the answers (output.json) of the Completed loops not read yet or due for another
    attempt, batch after batch; then refresh the figures they change. One run at a time."""
    with answers.single_runner() as mine:
        if not mine:
            return {"skipped": "another ingestion is running"}
        report = answers.ingest_due_answers(deadline=time.monotonic() + INGEST_RUN_SECONDS)
    for fd in FlowDefinition.objects.filter(pk__in=report.flow_definition_ids):
        stats.refresh_flow_definition_stats(fd)
    if reviewers.reviewer_stats_due(answers_written=report.answers > 0):
        reviewers.refresh_reviewer_stats()
    if report.loops and not report.unavailable and answers.due_loops(now=timezone.now()).exists():
        ingest_answers.delay()
    if report.unavailable:
        logger.warning("answers: S3 unreachable, the next run tries again: %s", report.unavailable)
    return {
        "loops": report.loops,
        "ingested": report.ingested,
        "answers": report.answers,
        "failed": report.failed,
        "given_up": report.given_up,
        "unavailable": report.unavailable,
        "seconds": round(report.seconds, 2),
    }


@shared_task(soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT, time_limit=settings.CELERY_TASK_TIME_LIMIT)
def sync_slice(sync_run_id: int, created_from: str | None, created_before: str | None) -> dict:
    """List and write one creation-time range of a distributed full sync (ISO-8601 bounds, None = open).

    Never raises: a chord's callback would not run after a failed header task, and the
    callback is what records the outcome and releases the claim. An unexpected error is
    logged and reported as this range's error.
    """
    try:
        return sync_distributed.sync_slice(sync_run_id, _parse(created_from), _parse(created_before))
    except Exception as exc:
        logger.exception("range %s..%s of sync run %s failed", created_from, created_before, sync_run_id)
        return {"error": f"{exc.__class__.__name__}: {exc}", "failed_ids": [], "skipped": False}


@shared_task(soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT, time_limit=settings.CELERY_TASK_TIME_LIMIT)
def finish_distributed_sync(results: list[dict], sync_run_id: int) -> dict:
    """The chord's callback: record the distributed sync's outcome, release the claim."""
    run = sync_distributed.finish_distributed_sync(sync_run_id, results)
    return {"sync_run": run.pk, "outcome": run.outcome, "loops_seen": run.loops_seen, "error": run.error}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


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


@shared_task(soft_time_limit=50, time_limit=60)
def evaluate_alerts() -> dict:
    """Evaluate the alert rules, hand the new and the lost deliveries to the workers, and roll
    up the metrics' counters; returns the tick's figures.

    Safe to run twice at once (a second beat by mistake): services.alerts claims each rule,
    and notify.deliver claims each delivery.
    """
    tick = alerts.evaluate_rules()
    overdue = notify.overdue_deliveries()
    for delivery_id in dict.fromkeys(tick.deliveries + overdue):
        deliver_notification.delay(delivery_id)
    metrics.roll_up_counters()
    return {"evaluated": tick.evaluated, "skipped": tick.skipped, "transitions": len(tick.transitions),
            "deliveries": len(tick.deliveries), "overdue": len(overdue)}


@shared_task(bind=True, soft_time_limit=60, time_limit=90, max_retries=None)
def deliver_notification(self, delivery_id: int) -> str:
    """Send one notification; on failure retry with the backoff notify.deliver decides.

    The number of attempts is bounded by the service (A2I_NOTIFY_MAX_ATTEMPTS), not by Celery.
    """
    outcome = notify.deliver(delivery_id)
    if outcome is None:
        return "nothing to do"
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


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
        if report.completed and cache.add("loops:events:answers-queued", True, timeout=settings.A2I_EVENTS_STATS_DELAY):
            # One ingestion run for every Completed event of the window, not one per loop.
            ingest_answers.apply_async(countdown=settings.A2I_EVENTS_STATS_DELAY)
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


@worker_shutdown.connect
@worker_process_shutdown.connect
def close_aws_clients(**kwargs) -> None:
    """Close the cached boto3 clients (their connection pools) when a worker or pool process stops."""
    closed = a2i.close_clients()
    logger.info("closed %d AWS client%s at worker shutdown", closed, "" if closed == 1 else "s")
