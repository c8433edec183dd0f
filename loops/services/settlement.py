"""Settling actions whose outcome is unknown: a stop or delete was sent, A2I never answered.

A2I may or may not have carried it out, so the audit row says "unknown" until the loop's
real state is observed *after* the call:

- positive evidence settles at once: a stopped loop seen Stopping or Stopped (or already
  finished: then the stop was moot), a deleted loop gone from A2I;
- negative evidence (a stop whose loop is still InProgress, a delete whose loop still
  exists) settles only once A2I_ACTION_SETTLE_MARGIN_SECONDS have passed since the call,
  because a request A2I received late may still be carried out.

Evidence comes from DescribeHumanLoop (the settle task, "refresh from A2I") and from the
sync: every successful sync lists every loop our copy has as not finished (so a stop's
loop still InProgress was listed as such), and a full sync lists every loop (so a deleted
one still there was listed). Each settled row gets its final outcome and detail, and the
batch's summary is rewritten. Side effects: LoopAction and LoopActionBatch rows only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from loops import a2i
from loops.models import HumanLoopStatus, LoopAction, LoopActionBatch
from loops.services.actions import summarize_batch
from loops.services.loop_actions import DETAIL_SEPARATOR, NOT_IN_PROGRESS, apply_description, mark_deleted

Outcome = LoopAction.Outcome
Action = LoopActionBatch.Action

DESCRIBE, FULL_SYNC, INCREMENTAL_SYNC = "describe", "full sync", "incremental sync"


def settle_unknown_actions(rows: QuerySet, *, observed_at: datetime, evidence: str) -> int:
    """Settle the unknown LoopAction rows of `rows` from their loops' stored state; returns how many.

    `observed_at` is when that state was read from A2I (a describe's time, a sync's
    start); rows whose call finished after it are left alone. `evidence` is DESCRIBE,
    FULL_SYNC or INCREMENTAL_SYNC: an incremental sync does not list finished loops, so
    it cannot say that a deleted loop still exists.
    """
    margin = timedelta(seconds=settings.A2I_ACTION_SETTLE_MARGIN_SECONDS)
    unknown = rows.filter(outcome=Outcome.UNKNOWN, finished_at__lte=observed_at).select_related("loop")
    settled, batches = 0, set()
    for row in unknown.order_by("pk").iterator(chunk_size=500):
        late_enough = row.finished_at + margin <= observed_at
        result = _settle(row, late_enough, evidence, observed_at)
        if result is None:
            continue
        outcome, detail = result
        settled += LoopAction.objects.filter(pk=row.pk, outcome=Outcome.UNKNOWN).update(
            outcome=outcome, detail=detail[:4000], finished_at=timezone.now()
        )
        batches.add(row.batch_id)
    if batches:
        for batch in LoopActionBatch.objects.filter(pk__in=batches):
            LoopActionBatch.objects.filter(pk=batch.pk).update(summary=summarize_batch(batch))
    return settled


def _settle(row: LoopAction, late_enough: bool, evidence: str, observed_at: datetime) -> tuple[str, str] | None:
    loop = row.loop
    when = f"{evidence} at {observed_at:%Y-%m-%d %H:%M:%S} UTC"
    if row.action == Action.STOP:
        if loop.deleted_upstream:
            return Outcome.SKIPPED, f"already deleted in A2I{DETAIL_SEPARATOR}settled by {when}"
        if loop.status in (HumanLoopStatus.STOPPING, HumanLoopStatus.STOPPED):
            return Outcome.SUCCEEDED, f"A2I received the stop: {loop.status} ({when})"
        if loop.status != HumanLoopStatus.IN_PROGRESS:
            return Outcome.SKIPPED, f"{NOT_IN_PROGRESS}{DETAIL_SEPARATOR}A2I says {loop.status} ({when})"
        if late_enough:
            return Outcome.FAILED, f"A2I did not receive the stop: still InProgress ({when}); run it again"
        return None
    # delete, stop then delete: the loop should be gone.
    if loop.deleted_upstream:
        return Outcome.SUCCEEDED, f"A2I received the delete: the loop is gone ({when})"
    if late_enough and evidence != INCREMENTAL_SYNC:
        return Outcome.FAILED, f"A2I did not receive the delete: the loop still exists, {loop.status} ({when}); run it again"
    return None


def describe_and_settle(batch_id: int) -> int:
    """DescribeHumanLoop each loop of `batch_id` whose action is unknown, store what A2I says,
    and settle; returns how many rows were settled.

    Side effects: the loops' rows (status and history, or deleted upstream) and the
    settled LoopAction rows. Raises A2IUnavailable when A2I cannot be reached (the task
    retries later); other A2I errors leave that row unknown for the next sync.
    """
    rows = LoopAction.objects.filter(batch_id=batch_id, outcome=Outcome.UNKNOWN).select_related("loop__flow_definition")
    observed_at = timezone.now()
    for row in rows:
        loop = row.loop
        try:
            apply_description(loop, a2i.describe_human_loop(loop.flow_definition.region, loop.name))
        except a2i.ClientError as exc:
            if a2i.error_code(exc) == "ResourceNotFoundException":
                mark_deleted(loop)
    return settle_unknown_actions(
        LoopAction.objects.filter(batch_id=batch_id), observed_at=observed_at, evidence=DESCRIBE
    )


def settle_after_sync(flow_definition_id: int, *, listed_at: datetime, full: bool) -> int:
    """Settle the unknown actions on one flow definition's loops after a successful sync that started at `listed_at`."""
    rows = LoopAction.objects.filter(loop__flow_definition_id=flow_definition_id)
    return settle_unknown_actions(rows, observed_at=listed_at, evidence=FULL_SYNC if full else INCREMENTAL_SYNC)
