"""A full sync of one huge flow definition spread over many workers (A2I_SYNC_DISTRIBUTE).

Three steps, chained by loops.tasks as a Celery chord (the service knows nothing of Celery):

1. `plan_distributed_sync`: claim the flow definition, record the SyncRun, read the
   first page (where the loops begin) and cut the range from there to now into
   A2I_SYNC_SLICES creation-time ranges. A flow definition that fits on one page is
   synced right away, in this process.
2. `sync_slice`, one task per range, on any worker: list the range (itself as
   concurrent slices, services.sync_listing), write its pages, add its counters to the
   SyncRun, and mark deletions in the parts of the range it listed to their end.
3. `finish_distributed_sync`, once every range has answered: describe the loops that
   became Failed, record the outcome (failed with the first error if any range
   failed; its committed pages stay), release the claim, refresh the stats.

The claim: ranges extend it while they run (the SyncRun being still "running" says the
claim is still ours: a sync that takes over an expired claim first closes the running
run). Deletion marking in one range runs while other ranges write, so its UPDATE checks
the range again (services.sync.mark_unlisted_deleted).
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from loops import a2i
from loops.models import FlowDefinition, SyncRun
from loops.services import sync
from loops.services.sync_listing import ceil_ms
from loops.services.sync_writer import write_pages

log = logging.getLogger(__name__)

Range = tuple[datetime | None, datetime | None]


@dataclass
class DistributedPlan:
    run: SyncRun
    # The creation-time ranges to hand to workers; empty when the run already ended
    # (skipped, failed, or small enough to be synced in place).
    ranges: list[Range] = field(default_factory=list)


def plan_distributed_sync(flow_definition_id: int) -> DistributedPlan:
    """Start a full sync of the flow definition and cut it into ranges for the workers.

    Returns a plan without ranges when another sync holds the claim (skipped run), when
    the first ListHumanLoops call fails (failed run; A2IUnavailable is re-raised after
    it is recorded), or when every loop fits on the first page (synced here).
    """
    fd = FlowDefinition.objects.get(pk=flow_definition_id)
    run, claimed_until = sync.start_run(fd, full=True)
    if claimed_until is None:
        return DistributedPlan(run)
    try:
        first_page, more = _first_page(fd)
    except (a2i.ClientError, a2i.A2IUnavailable) as exc:
        sync.finish_failed(fd, run, a2i.error_message(exc))
        _release(fd)
        if isinstance(exc, a2i.A2IUnavailable):
            raise
        return DistributedPlan(run)
    if not more:
        # One page: the whole sync is cheaper than a task per range.
        return DistributedPlan(sync.run_claimed(fd, run, claimed_until))
    oldest = first_page[0]["CreationTime"]
    return DistributedPlan(run, split_range(oldest, run.started_at, settings.A2I_SYNC_SLICES))


def split_range(oldest: datetime, now: datetime, parts: int) -> list[Range]:
    """[(None, b1), (b1, b2), ..., (bn, None)]: `parts` ranges of equal width between the
    oldest loop and now, on whole milliseconds; open at both ends, so no loop is outside."""
    parts = max(1, parts)
    step = (now - oldest) / parts
    bounds: list[datetime] = []
    for n in range(1, parts):
        bound = ceil_ms(oldest + step * n)
        if bound > oldest and (not bounds or bound > bounds[-1]):
            bounds.append(bound)
    edges: list[datetime | None] = [None, *bounds, None]
    return list(zip(edges, edges[1:], strict=False))


def sync_slice(sync_run_id: int, lo: datetime | None, hi: datetime | None) -> dict:
    """List and write one range of a distributed sync; returns its error (or None) and the
    ids of loops it saw become Failed (at most A2I_SYNC_DESCRIBE_LIMIT).

    Side effects: writes pages, adds its counters to the SyncRun (one UPDATE), marks
    deleted upstream the stored loops of the parts of its range listed to their end.
    Does nothing when the run is no longer running (another sync took the claim over).
    A database error propagates.
    """
    run = SyncRun.objects.select_related("flow_definition").get(pk=sync_run_id)
    if run.outcome != SyncRun.Outcome.RUNNING:
        return {"error": None, "failed_ids": [], "skipped": True}
    fd = run.flow_definition
    limit = settings.A2I_SYNC_DESCRIBE_LIMIT
    part = SyncRun(pk=run.pk, started_at=run.started_at, listed_from=None, kind=run.kind)  # this range's counters
    seen: set[int] = set()
    failed_ids: list[int] = []
    error = None
    listing = sync.new_listing(fd, start=lo, end=hi, until=run.started_at, split_start=lo is not None)
    renewed = timezone.now()
    try:
        with closing(listing), closing(write_pages(fd, listing)) as written:
            for page in written:
                seen.update(page.ids)
                failed_ids.extend(page.failed_ids[: max(0, limit - len(failed_ids))])
                part.pages += page.pages
                part.loops_seen += page.listed
                part.created += page.created
                part.updated += page.updated
                if timezone.now() - renewed > timedelta(seconds=settings.A2I_SYNC_CLAIM_SECONDS / 4):
                    renewed = timezone.now()
                    _renew(fd, run)
    except (a2i.ClientError, a2i.A2IUnavailable) as exc:
        error = a2i.error_message(exc)
        log.warning("range %s..%s of sync run %s failed: %s", lo, hi, run.pk, error)
    part.marked_deleted = sync.mark_unlisted_deleted(fd, part, seen, listing.completed_ranges())
    SyncRun.objects.filter(pk=run.pk).update(
        pages=F("pages") + part.pages, loops_seen=F("loops_seen") + part.loops_seen, created=F("created") + part.created,
        updated=F("updated") + part.updated, marked_deleted=F("marked_deleted") + part.marked_deleted,
    )
    return {"error": error, "failed_ids": failed_ids, "skipped": False}


def finish_distributed_sync(sync_run_id: int, results: list[dict]) -> SyncRun:
    """End a distributed sync once every range answered; returns the SyncRun.

    Failed (first error) when any range failed, else succeeded after describing the
    newly Failed loops and a bounded backlog. Releases the claim in both cases.
    """
    run = SyncRun.objects.select_related("flow_definition").get(pk=sync_run_id)
    fd = run.flow_definition
    if run.outcome != SyncRun.Outcome.RUNNING:
        return run  # another sync took the claim over and closed this run
    errors = [result["error"] for result in results if result.get("error")]
    try:
        if errors:
            sync.finish_failed(fd, run, errors[0])
            return run
        limit = settings.A2I_SYNC_DESCRIBE_LIMIT
        failed_ids = [loop_id for result in results for loop_id in result.get("failed_ids", [])][:limit]
        try:
            sync.describe_failures(fd, failed_ids, limit - len(failed_ids))
        except (a2i.ClientError, a2i.A2IUnavailable) as exc:
            sync.finish_failed(fd, run, a2i.error_message(exc))
            return run
        sync.finish_succeeded(fd, run)
        return run
    finally:
        _release(fd)


def _first_page(fd: FlowDefinition) -> tuple[list[dict], bool]:
    """The oldest page of loops and whether there are more (two ListHumanLoops calls at most)."""
    pages = a2i.iter_loop_pages(fd.region, fd.arn)
    first = next(pages, [])
    more = next(pages, None) is not None
    return first, more


def _renew(fd: FlowDefinition, run: SyncRun) -> None:
    """Extend the claim while this run is still the one running (see the module docstring)."""
    if SyncRun.objects.filter(pk=run.pk, outcome=SyncRun.Outcome.RUNNING).exists():
        until = timezone.now() + timedelta(seconds=settings.A2I_SYNC_CLAIM_SECONDS)
        FlowDefinition.objects.filter(pk=fd.pk, sync_claimed_until__lt=until).update(sync_claimed_until=until)


def _release(fd: FlowDefinition) -> None:
    FlowDefinition.objects.filter(pk=fd.pk).update(sync_claimed_until=None)
