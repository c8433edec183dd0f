"""One loop, one call: stop or delete a human loop in A2I and apply the result locally.

The per-loop half of the actions; loops.services.actions runs batches of
these and records their outcomes. Each function returns (outcome, detail) where
outcome is a LoopAction.Outcome value and detail the text stored with it.

`interactive=True` is for calls made while a person waits (an action run inside the
web request): the fail-fast client, and no waiting out a throttle here (Deferred is
raised instead, so the caller hands the loop to a worker).
"""

from __future__ import annotations

import random
import time

from django.conf import settings
from django.utils import timezone

from loops import a2i
from loops.models import TERMINAL_STATUSES, HumanLoop, HumanLoopStatus, LoopAction, LoopActionBatch
from loops.services.loop_state import mark_loop_deleted_upstream, set_loop_status

Action = LoopActionBatch.Action
Outcome = LoopAction.Outcome

# Skip reasons: fixed strings, so the summary can group by them. A detail may add
# "; <specifics>" after the reason (see DETAIL_SEPARATOR).
NOT_IN_PROGRESS = "not InProgress"
NOT_FINISHED = "not Completed, Failed or Stopped"
ALREADY_DELETED = "already deleted in A2I"
DETAIL_SEPARATOR = "; "

DELETABLE_STATUSES = TERMINAL_STATUSES  # A2I deletes only Completed, Failed and Stopped loops.


def skip_reason(action: str, status: str, deleted_upstream: bool) -> str | None:
    """Why `action` does not apply to a loop in this state, or None when it applies.

    stop: InProgress only. delete: Completed, Failed, Stopped only. stop_and_delete:
    any loop still in A2I (InProgress ones are stopped first, Stopping ones awaited).
    """
    if deleted_upstream:
        return ALREADY_DELETED
    if action == Action.STOP and status != HumanLoopStatus.IN_PROGRESS:
        return NOT_IN_PROGRESS
    if action == Action.DELETE and status not in DELETABLE_STATUSES:
        return NOT_FINISHED
    return None


def skip_detail(reason: str, status: str) -> str:
    """The audit detail of a skip: the reason, then the status that caused it."""
    return reason if reason == ALREADY_DELETED else f"{reason}{DETAIL_SEPARATOR}status is {status}"


class Unavailable(Exception):
    """A2I cannot be reached at all: the rest of the batch is reported, not attempted."""


class OutcomeUnknown(Unavailable):
    """The call was sent but A2I did not answer: it may have been carried out.

    That loop is recorded as unknown (settled later by a sync or a describe); the rest of
    the batch, as for Unavailable, is not attempted.
    """


class Deferred(Exception):
    """An interactive call cannot finish now (throttled): hand this loop and the rest to a worker."""


UNKNOWN_DETAIL = "unknown: A2I may have received it"


def unknown_detail(exc: Exception) -> str:
    """The audit detail of a call whose outcome is unknown."""
    return f"{UNKNOWN_DETAIL} ({exc}); the next sync or a refresh from A2I settles it"


def stop_loop(loop: HumanLoop, *, interactive: bool = False) -> tuple[str, str]:
    """StopHumanLoop; on success the row goes to Stopping at once (with a history row).

    A refusal is explained (see explain_refusal). Raises Unavailable when A2I
    cannot be reached, OutcomeUnknown when it did not answer.
    """
    try:
        call_a2i(a2i.stop_human_loop, loop.flow_definition.region, loop.name, interactive=interactive)
    except a2i.ClientError as exc:
        return explain_refusal(Action.STOP, loop, exc, interactive=interactive)
    set_loop_status(loop, HumanLoopStatus.STOPPING, observed_at=timezone.now())
    loop.status = HumanLoopStatus.STOPPING  # whatever the helper does to the instance
    return Outcome.SUCCEEDED, "stop requested; now Stopping"


def delete_loop(loop: HumanLoop, *, stopped: bool = False, interactive: bool = False) -> tuple[str, str]:
    """DeleteHumanLoop; on success the row is kept, marked deleted upstream.

    `stopped` says the loop was stopped by this same operation (for the detail).
    A refusal is explained (see explain_refusal). Raises Unavailable when A2I
    cannot be reached, OutcomeUnknown when it did not answer.
    """
    try:
        call_a2i(a2i.delete_human_loop, loop.flow_definition.region, loop.name, interactive=interactive)
    except a2i.ClientError as exc:
        return explain_refusal(Action.DELETE, loop, exc, interactive=interactive)
    mark_deleted(loop)
    return Outcome.SUCCEEDED, "stopped, then deleted" if stopped else f"deleted{DETAIL_SEPARATOR}was {loop.status}"


def explain_refusal(action: str, loop: HumanLoop, exc: Exception, *, interactive: bool = False) -> tuple[str, str]:
    """Turn A2I's refusal into an outcome, learning the loop's real state when that explains it.

    ResourceNotFoundException: the loop is gone from A2I (marked deleted upstream,
    skipped). ValidationException: our copy was stale (e.g. the loop completed
    since the last sync); describe it, store its status and report the skip.
    Anything else is the loop's failure, with A2I's code and message.
    """
    code = a2i.error_code(exc)
    if code == "ResourceNotFoundException":
        mark_deleted(loop)
        return Outcome.SKIPPED, ALREADY_DELETED
    if code == "ValidationException":
        try:
            described = call_a2i(a2i.describe_human_loop, loop.flow_definition.region, loop.name, interactive=interactive)
        except a2i.ClientError:
            described = None
        if described is not None:
            apply_description(loop, described)
            reason = skip_reason(action, loop.status, loop.deleted_upstream)
            if reason is not None:
                return Outcome.SKIPPED, f"{reason}{DETAIL_SEPARATOR}A2I says {loop.status}"
    return Outcome.FAILED, a2i.error_message(exc)


def apply_description(loop: HumanLoop, described: dict) -> None:
    status = described["HumanLoopStatus"]
    set_loop_status(
        loop,
        status,
        failure_code=described.get("FailureCode") or "",
        failure_reason=described.get("FailureReason") or "",
        observed_at=timezone.now(),
    )
    loop.status = status


def mark_deleted(loop: HumanLoop) -> None:
    mark_loop_deleted_upstream(loop, observed_at=timezone.now())
    loop.deleted_upstream = True


def wait_until_terminal(loop: HumanLoop) -> None:
    """Poll DescribeHumanLoop with backoff until the loop is Completed, Failed or Stopped.

    Bounded by A2I_ACTION_STOP_WAIT_SECONDS; stores each status seen on the loop row.
    A loop already gone is marked deleted upstream. Raises ClientError for other errors.
    """
    deadline = time.monotonic() + settings.A2I_ACTION_STOP_WAIT_SECONDS
    delay = settings.A2I_ACTION_POLL_SECONDS
    while True:
        try:
            described = call_a2i(a2i.describe_human_loop, loop.flow_definition.region, loop.name)
        except a2i.ClientError as exc:
            if a2i.error_code(exc) != "ResourceNotFoundException":
                raise
            mark_deleted(loop)
            return
        apply_description(loop, described)
        if loop.status in TERMINAL_STATUSES or time.monotonic() + delay > deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def call_a2i(fn, *args, interactive: bool = False):
    """Call a `loops.a2i` function, retrying ThrottlingException with exponential backoff.

    botocore has already retried the call (standard mode); this outer, bounded retry
    (A2I_ACTION_THROTTLE_RETRIES times, full jitter, delays capped at 20 s) is what
    lets a bulk action ride out a sustained throttle without losing loops. Raises the
    last ClientError when retries run out, OutcomeUnknown when a stop or delete got no
    answer, Unavailable when A2I cannot be reached. `interactive=True`: the fail-fast
    client, and Deferred at the first throttle instead of waiting.
    """
    retries = settings.A2I_ACTION_THROTTLE_RETRIES
    base = settings.A2I_ACTION_THROTTLE_BACKOFF_SECONDS
    attempt = 0
    while True:
        try:
            return fn(*args, interactive=interactive)
        except a2i.A2IOutcomeUnknown as exc:
            raise OutcomeUnknown(str(exc)) from exc
        except a2i.A2IUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        except a2i.ClientError as exc:
            if a2i.error_code(exc) == "ThrottlingException" and interactive:
                raise Deferred(a2i.error_message(exc)) from exc
            if a2i.error_code(exc) != "ThrottlingException" or attempt >= retries:
                raise
            time.sleep(random.uniform(0, min(20.0, base * 2**attempt)))
            attempt += 1
