"""Single-loop state changes: what an action or a "refresh from A2I" writes.

The bulk path (a sync page) lives in services.sync and writes the same columns
in batches; these functions change one row at a time.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from loops import a2i
from loops.models import TERMINAL_STATUSES, HumanLoop, HumanLoopStatusChange
from loops.services import page_cache

Source = HumanLoopStatusChange.Source


def set_loop_status(
    loop: HumanLoop,
    status: str,
    *,
    failure_code: str = "",
    failure_reason: str = "",
    observed_at: datetime | None = None,
    source: str = Source.ACTION,
) -> bool:
    """Write `status` (and the failure fields) to the loop's row; return whether the status changed.

    Side effects: updates the row (and the `loop` instance), and adds one
    HumanLoopStatusChange (with `source`) when the status differs from the stored
    one. The stored status is read under a row lock, so a concurrent sync page, an
    event and an action cannot both record the same transition.

    An action never moves a terminal loop back (to Stopping after a stop call): when
    A2I's event for the end of the loop arrived between the call and this write, the
    stored status is newer than the action's, and nothing is written.
    """
    now = observed_at or timezone.now()
    with transaction.atomic():
        current = HumanLoop.objects.select_for_update().values_list("status", flat=True).get(pk=loop.pk)
        if source == Source.ACTION and current in TERMINAL_STATUSES and status not in TERMINAL_STATUSES:
            return False
        changed = current != status
        fields = {
            "status": status,
            "failure_code": failure_code or "",
            "failure_reason": failure_reason or "",
            "last_seen_at": now,
        }
        if changed:
            fields["status_changed_at"] = now
            HumanLoopStatusChange.objects.create(
                loop_id=loop.pk, from_status=current, to_status=status, observed_at=now, source=source
            )
        HumanLoop.objects.filter(pk=loop.pk).update(**fields)
        page_cache.data_changed()
    for field, value in fields.items():
        setattr(loop, field, value)
    return changed


def timeline(loop: HumanLoop) -> list[HumanLoopStatusChange]:
    """The loop's status history for its page, oldest first, beginning with its first sight.

    A sync's first sight of a loop writes no row (a first full sync would write one per
    loop, services.sync_sql): it is rebuilt, unsaved, from first_seen_at and the status
    the loop had then, the from_status of its first transition or, without one, its
    status now. Loops first seen by an event, and rows written before, have a row.
    """
    rows = list(loop.status_changes.all())
    if rows and not rows[0].from_status:
        return rows
    first_status = rows[0].from_status if rows else loop.status
    first_sight = HumanLoopStatusChange(
        loop=loop, from_status="", to_status=first_status, observed_at=loop.first_seen_at, source=Source.SYNC
    )
    return [first_sight, *rows]


def mark_loop_deleted_upstream(loop: HumanLoop, *, observed_at: datetime | None = None) -> None:
    """Mark the loop as deleted in A2I; the row stays as history. No-op if already marked."""
    now = observed_at or timezone.now()
    updated = HumanLoop.objects.filter(pk=loop.pk, deleted_upstream=False).update(
        deleted_upstream=True, deleted_upstream_at=now, last_seen_at=now
    )
    if updated:
        page_cache.data_changed()
        loop.deleted_upstream, loop.deleted_upstream_at, loop.last_seen_at = True, now, now


def refresh_loop(loop: HumanLoop, *, source: str = Source.SYNC) -> HumanLoop:
    """DescribeHumanLoop now and apply the answer to the row; returns the refreshed loop.

    A status change is recorded with `source` (default "sync": like a sync, the refresh
    observes A2I's state). A loop A2I no longer knows (ResourceNotFoundException) is
    marked deleted upstream. Other ClientErrors and A2IUnavailable propagate, nothing written.
    """
    region = a2i.region_of_arn(loop.arn)
    try:
        described = a2i.describe_human_loop(region, loop.name, interactive=True)
    except a2i.ClientError as exc:
        if a2i.error_code(exc) == "ResourceNotFoundException":
            mark_loop_deleted_upstream(loop)
            loop.refresh_from_db()
            return loop
        raise
    now = timezone.now()
    output_uri = (described.get("HumanLoopOutput") or {}).get("OutputS3Uri") or loop.output_s3_uri
    set_loop_status(
        loop,
        described["HumanLoopStatus"],
        failure_code=described.get("FailureCode") or "",
        failure_reason=described.get("FailureReason") or "",
        observed_at=now,
        source=source,
    )
    # The loop exists in A2I, so it is not deleted (a name reused after a delete, or a
    # delete that A2I refused after we marked it).
    HumanLoop.objects.filter(pk=loop.pk).update(
        output_s3_uri=output_uri, creation_time=described["CreationTime"], deleted_upstream=False, deleted_upstream_at=None
    )
    page_cache.data_changed()
    loop.refresh_from_db()
    return loop
