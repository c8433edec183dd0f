"""Stop and delete human loops in A2I, with an audit row per attempt.

The flow, in order:

1. `plan_action(action, loops)`: what would happen (eligible loops, skipped ones
   and why). Reads the database only; nothing reaches A2I.
2. `create_batch(user, action, reason, loops)`: the confirmed request. Writes one
   LoopActionBatch and one *pending* LoopAction per selected loop, so every loop
   is accounted for before the first call to A2I.
3. the caller runs it now or hands it to the Celery task (`runs_in_background`
   says which; loops.tasks.dispatch_batch does it).
4. `execute_batch(batch_id)`: calls A2I loop by loop through `loops.a2i`, records
   each outcome (succeeded, skipped or failed, never left pending), updates the
   local rows at once (Stopping; deleted upstream) and the flow definitions' stats.

The per-loop calls (stop, delete, wait for Stopped, explain a refusal) live in
loops.services.loop_actions. Throttling: botocore's standard retries absorb most
of it; a ThrottlingException that still comes through is retried there with
exponential backoff a bounded number of times, then recorded as the loop's failure.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import EmptyResultSet, PermissionDenied
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, QuerySet
from django.http import QueryDict
from django.utils import timezone

from loops import a2i
from loops.filters import LoopFilter
from loops.models import (
    TERMINAL_STATUSES,
    FlowDefinition,
    HumanLoop,
    HumanLoopStatus,
    LoopAction,
    LoopActionBatch,
)
from loops.permissions import user_can_run
from loops.services import loop_actions
from loops.services import stats as stats_service
from loops.services.loop_actions import ALREADY_DELETED, DETAIL_SEPARATOR, skip_reason

logger = logging.getLogger(__name__)

Action = LoopActionBatch.Action
Outcome = LoopAction.Outcome

SUCCESS_VERBS = {Action.STOP: "stopped", Action.DELETE: "deleted", Action.STOP_AND_DELETE: "deleted"}

# The summary of a prepared batch that was refused when the worker prepared it.
NOT_RUN = "not run:"

# How many loops are read and processed at a time (bounded memory for huge batches).
CHUNK_SIZE = 100


# --- what the loop page offers ---------------------------------------------------


def offered_actions(user, loop: HumanLoop) -> list[Action]:
    """The actions to offer `user` on `loop`'s page: allowed to them and applicable to the loop.

    The same rule as execution (skip_reason). Stop-then-delete is offered only where
    delete alone does not apply (InProgress, Stopping): on a finished loop it is a delete.
    """
    offered = [
        action
        for action in Action
        if user_can_run(user, action) and skip_reason(action, loop.status, loop.deleted_upstream) is None
    ]
    if Action.DELETE in offered and Action.STOP_AND_DELETE in offered:
        offered.remove(Action.STOP_AND_DELETE)
    return offered


# --- planning ------------------------------------------------------------------


@dataclass
class PlannedLoop:
    loop: HumanLoop
    skip_reason: str | None

    @property
    def eligible(self) -> bool:
        return self.skip_reason is None


@dataclass
class Plan:
    """What an action would do to a selection: counts over all of it, details for the first loops."""

    action: str
    total: int
    eligible: int
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> number of loops
    loops: list[PlannedLoop] = field(default_factory=list)  # the first `sample` loops

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def more(self) -> int:
        """How many selected loops are not listed in `loops`."""
        return self.total - len(self.loops)


def plan_action(action: str, loops: QuerySet, *, sample: int = 100) -> Plan:
    """Count eligible and skipped loops of `loops` for `action`, and detail the first `sample`.

    Two queries whatever the size of the selection (a GROUP BY over status and the
    deleted marker, and the sample). No side effect; raises ValueError for an
    unknown action.
    """
    if action not in Action.values:
        raise ValueError(f"unknown action {action!r}")
    plan = Plan(action=action, total=0, eligible=0)
    groups = loops.order_by().values_list("status", "deleted_upstream").annotate(n=Count("pk"))
    for status, deleted, n in groups:
        plan.total += n
        reason = skip_reason(action, status, deleted)
        if reason is None:
            plan.eligible += n
        else:
            plan.skipped[reason] = plan.skipped.get(reason, 0) + n
    for loop in loops.select_related("flow_definition")[:sample]:
        plan.loops.append(PlannedLoop(loop, skip_reason(action, loop.status, loop.deleted_upstream)))
    return plan


# --- the confirmed request -------------------------------------------------------


def create_batch(user, action: str, reason: str, loops: QuerySet | Iterable[int]) -> LoopActionBatch:
    """Record a confirmed action: one LoopActionBatch and one pending LoopAction per loop.

    `loops` is a HumanLoop queryset or loop ids (unknown ids are ignored, duplicates
    collapse). Does not call A2I. Raises PermissionDenied when `user` lacks the
    action's permissions (checked here too, whatever the caller did), ValueError for
    an unknown action, an empty reason or an empty selection.
    """
    if action not in Action.values:
        raise ValueError(f"unknown action {action!r}")
    if not user_can_run(user, action):
        raise PermissionDenied(f"{user} may not {action} human loops")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required")
    if isinstance(loops, QuerySet):
        ids = loops.order_by().values("pk")
    else:
        ids = list(loops)
    loop_ids = HumanLoop.objects.filter(pk__in=ids).order_by("id").values_list("id", flat=True)
    with transaction.atomic():
        batch = LoopActionBatch.objects.create(user=user, action=action, reason=reason)
        total = _insert_pending_rows(batch, loop_ids)
        if total == 0:
            raise ValueError("no loops selected")  # rolls the batch back
        batch.total = total
        batch.save(update_fields=["total"])
    return batch


def _insert_pending_rows(batch: LoopActionBatch, loop_ids: QuerySet) -> int:
    """One pending LoopAction per id of `loop_ids`, in ONE INSERT ... SELECT.

    "All N loops matching the filters" can be 100,000s of loops: bulk_create would
    fetch every id into Python and send it back (seconds per 100,000 rows);
    INSERT ... SELECT keeps the ids in the database. Returns the number of rows.
    """
    try:
        select_sql, select_params = loop_ids.query.sql_with_params()
    except EmptyResultSet:  # e.g. no ids at all: Django knows the answer without asking
        return 0
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in ("batch_id", "user_id", "loop_id", "action", "reason", "created_at", "outcome", "detail"))
    sql = (
        f"INSERT INTO {quote(LoopAction._meta.db_table)} ({columns}) "
        f"SELECT %s, %s, selected.id, %s, %s, %s, %s, '' FROM ({select_sql}) AS selected"
    )
    params = [batch.pk, batch.user_id, batch.action, batch.reason, timezone.now(), Outcome.PENDING, *select_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def runs_in_background(batch: LoopActionBatch) -> bool:
    """Whether `batch` is for a Celery worker rather than the web request that confirmed it.

    More than A2I_BULK_ACTION_THRESHOLD loops, and every stop-then-delete (waiting for
    Stopped can take up to A2I_ACTION_STOP_WAIT_SECONDS, too long for a web request).
    """
    return batch.total > settings.A2I_BULK_ACTION_THRESHOLD or batch.action == Action.STOP_AND_DELETE


def prepares_in_background(action: str, loops: QuerySet) -> bool:
    """Whether an "all N matching" selection is left for the worker to build (see create_prepared_batch).

    The same rule as runs_in_background, counted cheaply: at most threshold + 1 rows.
    """
    threshold = settings.A2I_BULK_ACTION_THRESHOLD
    return action == Action.STOP_AND_DELETE or loops.order_by()[: threshold + 1].count() > threshold


def create_prepared_batch(user, action: str, reason: str, *, filters: str, upto: int) -> LoopActionBatch:
    """Record a confirmed "all matching" action whose loops the worker selects (prepare_batch).

    Writing one pending row per loop for 100,000s of loops takes seconds: too long for
    the web request. The batch is stored in state "preparing" with its selection (the
    loop list's query string and the largest loop id shown) and no rows yet. Raises
    PermissionDenied and ValueError as create_batch does (the selection is checked by
    prepare_batch).
    """
    if action not in Action.values:
        raise ValueError(f"unknown action {action!r}")
    if not user_can_run(user, action):
        raise PermissionDenied(f"{user} may not {action} human loops")
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("a reason is required")
    return LoopActionBatch.objects.create(
        user=user, action=action, reason=reason, state=LoopActionBatch.State.PREPARING,
        selection={"filters": filters or "", "upto": upto},
    )


def prepare_batch(batch_id: int) -> LoopActionBatch:
    """Build the pending rows of a batch in state "preparing"; then it is "pending", or "done" if empty.

    Resolves the stored selection with the loop list's own FilterSet, bounded by `upto`,
    in one INSERT ... SELECT, under a lock on the batch row: a task delivered twice
    prepares it once. The user's permission is checked again (it may have been revoked
    since the confirmation). A batch in any other state is returned as it is.
    """
    with transaction.atomic():
        batch = LoopActionBatch.objects.select_for_update().select_related("user").get(pk=batch_id)
        if batch.state != LoopActionBatch.State.PREPARING:
            return batch
        problem = None
        if not user_can_run(batch.user, batch.action):
            problem = f"{NOT_RUN} {batch.user} no longer has the permission to {batch.action} loops"
        else:
            loop_filter = LoopFilter(QueryDict(batch.selection.get("filters") or ""), queryset=HumanLoop.objects.all())
            if not loop_filter.is_valid():
                problem = f"{NOT_RUN} the loop list's filters are no longer valid ({dict(loop_filter.errors)})"
        if problem is None:
            loops = loop_filter.qs.filter(pk__lte=batch.selection.get("upto") or 0)
            loop_ids = HumanLoop.objects.filter(pk__in=loops.order_by().values("pk")).order_by("id").values_list("id", flat=True)
            batch.total = _insert_pending_rows(batch, loop_ids)
            batch.state = LoopActionBatch.State.PENDING if batch.total else LoopActionBatch.State.DONE
            batch.summary = "" if batch.total else "nothing to do: no loop matches the filters any more"
        else:
            batch.state, batch.summary = LoopActionBatch.State.DONE, problem
        if batch.state == LoopActionBatch.State.DONE:
            batch.finished_at = timezone.now()
        batch.save(update_fields=["total", "state", "summary", "finished_at"])
    return batch


# --- execution -------------------------------------------------------------------


def execute_batch(batch_id: int) -> str:
    """Carry out a batch: call A2I for each pending LoopAction and record its outcome.

    Side effects per loop: StopHumanLoop / DeleteHumanLoop (and DescribeHumanLoop
    while waiting for a stop, or to learn why A2I refused); the loop row set to
    Stopping (with a status-change row) or marked deleted upstream; the LoopAction
    set to succeeded, skipped, failed or unknown with its detail. Then the batch's
    summary, state "done", and the stats of every flow definition it touched. A batch
    still "preparing" is prepared first (prepare_batch).

    Idempotent: only pending rows are processed, so a redelivered task resumes a
    batch a killed worker left half done. When A2I is unreachable, or stops answering
    (a stop or delete sent without an answer: that loop is "unknown"), the remaining
    rows are marked failed ("not attempted") instead of being tried one by one.
    Never raises for A2I errors; they become the loops' outcomes.
    """
    prepare_batch(batch_id)
    summary = _execute(batch_id, interactive=False, deadline=None)
    assert summary is not None  # only an interactive run hands over
    return summary


def execute_batch_inline(batch_id: int, *, budget_seconds: float) -> bool:
    """Run a batch inside the web request that confirmed it, within `budget_seconds`.

    Uses the interactive (fail-fast) client, never waits out a throttle, and stops
    calling A2I once the budget is spent: returns False when loops are left for a
    worker (the caller enqueues it; the rows left are still pending), True when the
    batch is done. Otherwise as execute_batch.
    """
    return _execute(batch_id, interactive=True, deadline=time.monotonic() + budget_seconds) is not None


def _execute(batch_id: int, *, interactive: bool, deadline: float | None) -> str | None:
    batch = LoopActionBatch.objects.get(pk=batch_id)
    if batch.state == LoopActionBatch.State.DONE:
        return batch.summary
    LoopActionBatch.objects.filter(pk=batch.pk).update(state=LoopActionBatch.State.RUNNING)

    pending = batch.actions.filter(outcome=Outcome.PENDING).select_related("loop__flow_definition").order_by("pk")
    last_pk = 0
    try:
        while True:
            rows = list(pending.filter(pk__gt=last_pk)[:CHUNK_SIZE])
            if not rows:
                break
            last_pk = rows[-1].pk
            if batch.action == Action.STOP_AND_DELETE:
                _stop_then_delete(rows)
            else:
                for row in rows:
                    if deadline is not None and time.monotonic() > deadline:
                        raise loop_actions.Deferred("the time allowed inside the web request is spent")
                    _finish(row, *_attempt(row, _run_one, batch.action, row.loop, interactive))
    except loop_actions.Deferred as exc:
        logger.info("action batch %s: the rest goes to a worker (%s)", batch.pk, exc)
        return None
    except loop_actions.Unavailable as exc:
        message = f"not attempted: {exc}"
        if isinstance(exc, loop_actions.OutcomeUnknown):
            message = f"not attempted: A2I stopped answering ({exc})"
        batch.actions.filter(outcome=Outcome.PENDING).update(
            outcome=Outcome.FAILED, detail=message[:4000], finished_at=timezone.now()
        )

    summary = summarize_batch(batch)
    LoopActionBatch.objects.filter(pk=batch.pk).update(
        state=LoopActionBatch.State.DONE, summary=summary, finished_at=timezone.now()
    )
    for flow_definition in FlowDefinition.objects.filter(loops__actions__batch=batch).distinct():
        stats_service.refresh_flow_definition_stats(flow_definition)
    logger.info("action batch %s (%s by %s): %s", batch.pk, batch.action, batch.user_id, summary)
    return summary


def _finish(row: LoopAction, outcome: str, detail: str) -> None:
    # Conditional on "still pending": if a task is ever delivered twice (a Redis
    # visibility timeout shorter than a huge batch), the first outcome recorded wins
    # and the duplicate's "A2I says Stopping" skip does not overwrite it.
    row.outcome, row.detail, row.finished_at = outcome, detail[:4000], timezone.now()
    LoopAction.objects.filter(pk=row.pk, outcome=Outcome.PENDING).update(
        outcome=row.outcome, detail=row.detail, finished_at=row.finished_at
    )


def _attempt(row: LoopAction, fn, *args):
    """_guarded(fn, *args) for `row`; a call that got no answer records the row as unknown, then stops the batch."""
    try:
        return _guarded(fn, *args)
    except loop_actions.OutcomeUnknown as exc:
        _finish(row, Outcome.UNKNOWN, loop_actions.unknown_detail(exc))
        raise


def _guarded(fn, *args):
    """Run one loop's step; a bug or an unexpected error fails that loop only, with the error.

    A2I being unreachable (or not answering), a step handed to a worker, and database
    errors still propagate: the first stops the batch (remaining loops reported), the
    second ends the inline run, the third leaves the rows pending for a rerun because
    nothing can be recorded reliably.
    """
    try:
        return fn(*args)
    except (loop_actions.Unavailable, loop_actions.Deferred, DatabaseError):
        raise
    except Exception as exc:
        logger.exception("unexpected error in an action step %s%r", getattr(fn, "__name__", fn), args)
        return Outcome.FAILED, f"unexpected error: {exc!r}; the loop's state in A2I is unknown until the next sync"


def _run_one(action: str, loop: HumanLoop, interactive: bool = False) -> tuple[str, str]:
    """Stop or delete one loop; returns (outcome, detail)."""
    reason = skip_reason(action, loop.status, loop.deleted_upstream)
    if reason is not None:
        return Outcome.SKIPPED, loop_actions.skip_detail(reason, loop.status)
    if action == Action.STOP:
        return loop_actions.stop_loop(loop, interactive=interactive)
    return loop_actions.delete_loop(loop, interactive=interactive)


def _stop_then_delete(rows: list[LoopAction]) -> None:
    """Stop every InProgress loop of the chunk first, then wait for each and delete it.

    Stopping the whole chunk before waiting means most loops are already Stopped
    when their turn comes, instead of one wait per loop. Always in a worker
    (runs_in_background), so with the background client.
    """
    waiting: list[LoopAction] = []
    stopped: set[int] = set()
    for row in rows:
        loop = row.loop
        reason = skip_reason(Action.STOP_AND_DELETE, loop.status, loop.deleted_upstream)
        if reason is not None:
            _finish(row, Outcome.SKIPPED, loop_actions.skip_detail(reason, loop.status))
            continue
        if loop.status == HumanLoopStatus.IN_PROGRESS:
            outcome, detail = _attempt(row, loop_actions.stop_loop, loop)
            if outcome == Outcome.FAILED or (outcome == Outcome.SKIPPED and loop.deleted_upstream):
                _finish(row, outcome, detail)
                continue
            if outcome == Outcome.SUCCEEDED:
                stopped.add(row.pk)
            # Stopped, or A2I said it was no longer InProgress (now Stopping or finished): delete it.
        waiting.append(row)

    for row in waiting:
        loop = row.loop
        failure = _attempt(row, _await_stop, loop)
        if failure is not None:
            _finish(row, *failure)
            continue
        if loop.deleted_upstream:
            _finish(row, Outcome.SKIPPED, ALREADY_DELETED)
        elif loop.status not in TERMINAL_STATUSES:
            wait = settings.A2I_ACTION_STOP_WAIT_SECONDS
            _finish(row, Outcome.FAILED, f"still {loop.status} after {wait} s; stop requested, not deleted")
        else:
            _finish(row, *_attempt(row, _delete_after_stop, loop, row.pk in stopped))


def _await_stop(loop: HumanLoop) -> tuple[str, str] | None:
    """Wait until the loop is Completed, Failed or Stopped; an outcome only if waiting failed."""
    try:
        if loop.status not in TERMINAL_STATUSES:
            loop_actions.wait_until_terminal(loop)
    except a2i.ClientError as exc:
        return loop_actions.explain_refusal(Action.STOP_AND_DELETE, loop, exc)
    return None


def _delete_after_stop(loop: HumanLoop, stopped: bool) -> tuple[str, str]:
    return loop_actions.delete_loop(loop, stopped=stopped)


# --- reporting -------------------------------------------------------------------


def outcome_counts(batch: LoopActionBatch) -> dict[str, int]:
    """Rows of `batch` by outcome, every outcome present (zeros included)."""
    counts = dict.fromkeys(Outcome.values, 0)
    counts.update(batch.actions.order_by().values_list("outcome").annotate(n=Count("pk")).values_list("outcome", "n"))
    return counts


def summarize_batch(batch: LoopActionBatch) -> str:
    """One line such as "12 stopped, 3 skipped (not InProgress), 1 failed: <reason>"."""
    rows = batch.actions.order_by().values_list("outcome", "detail")
    skipped: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    succeeded = pending = unknown = 0
    for outcome, detail in rows.iterator(chunk_size=5000):
        if outcome == Outcome.SUCCEEDED:
            succeeded += 1
        elif outcome == Outcome.SKIPPED:
            skipped[detail.split(DETAIL_SEPARATOR)[0]] += 1
        elif outcome == Outcome.FAILED:
            failed[detail] += 1
        elif outcome == Outcome.UNKNOWN:
            unknown += 1
        else:
            pending += 1
    parts = []
    if succeeded:
        parts.append(f"{succeeded} {SUCCESS_VERBS[batch.action]}")
    if skipped:
        reasons = ", ".join(_counted(skipped, len(skipped) > 1))
        parts.append(f"{skipped.total()} skipped ({reasons})")
    if failed:
        errors = "; ".join(_counted(failed, len(failed) > 1, limit=3))
        parts.append(f"{failed.total()} failed: {errors}")
    if unknown:
        parts.append(f"{unknown} {loop_actions.UNKNOWN_DETAIL}")
    if pending:
        parts.append(f"{pending} pending")
    return ", ".join(parts) or "nothing to do"


def batch_level(batch: LoopActionBatch, counts: dict[str, int] | None = None) -> str:
    """How a batch ended, for the colour of its message: "error", "warning", "success" or "info".

    error: nothing succeeded and something failed or is unknown; warning: some loops
    failed or are unknown; success: every loop succeeded or was skipped; info: not done.
    """
    counts = counts if counts is not None else outcome_counts(batch)
    if batch.state != LoopActionBatch.State.DONE or counts[Outcome.PENDING]:
        return "info"
    if batch.summary.startswith(NOT_RUN):
        return "error"
    troubled = counts[Outcome.FAILED] + counts[Outcome.UNKNOWN]
    if not troubled:
        return "success"
    return "error" if counts[Outcome.SUCCEEDED] == 0 else "warning"


def _counted(counter: Counter, with_counts: bool, limit: int | None = None) -> list[str]:
    items = counter.most_common(limit)
    texts = [f"{text} ({n})" if with_counts else text for text, n in items]
    if limit is not None and len(counter) > limit:
        texts.append(f"and {len(counter) - limit} other errors")
    return texts

