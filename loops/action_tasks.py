"""Celery tasks of the stop/delete actions (issue 5): thin adapters over loops.services.actions."""

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from loops.services import actions

logger = logging.getLogger(__name__)


@shared_task(name="loops.action_tasks.execute_loop_action_batch")
def execute_loop_action_batch(batch_id: int) -> str:
    """Run a confirmed batch (more than A2I_BULK_ACTION_THRESHOLD loops); returns its summary.

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
