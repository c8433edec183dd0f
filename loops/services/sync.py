"""Loop sync: bring the local copy of one flow definition's loops in line with A2I.

Steps of `sync_flow_definition`, in order:

1. claim the flow definition (a conditional UPDATE; a second sync is skipped);
2. list loops Ascending, from the beginning (full) or from the incremental start
   (the oldest non-terminal loop or the newest loop seen, whichever is older,
   minus A2I_INCREMENTAL_MARGIN), as up to A2I_SYNC_SLICES concurrent
   creation-time slices (services.sync_listing);
3. write each page in its own transaction (services.sync_writer, on up to
   A2I_SYNC_WRITERS connections): new loops inserted and stored rows read in one
   statement, UPDATE of changed ones only, one status history row per transition;
4. mark deleted upstream the stored loops of the listed range that were not
   listed (full: everything created before the sync began), only in the ranges
   whose slices were listed to their end;
5. describe the loops this run saw fail, and (full sync) a bounded slice of older
   Failed loops without a FailureCode (ListHumanLoops does not return it);
6. release the claim, whatever happened.

A failure (ClientError once botocore's retries ran out, A2IUnavailable) keeps
every page already committed, marks deletions in the slices that completed,
marks the SyncRun failed with the message, sets FlowDefinition.last_sync_error,
and releases the claim: the next run converges.

With A2I_SYNC_DISTRIBUTE on, a full sync's slices are listed and written by
Celery tasks on many workers instead (`plan_distributed_sync`,
`sync_slice`, `finish_distributed_sync`; loops.tasks chains them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from loops import a2i
from loops.models import ACTIVE_STATUSES, FlowDefinition, HumanLoop, HumanLoopStatus, SyncRun
from loops.services import page_cache
from loops.services.settlement import settle_after_sync
from loops.services.stats import refresh_flow_definition_stats
from loops.services.sync_listing import SlicedListing
from loops.services.sync_writer import write_pages

log = logging.getLogger(__name__)

# Concurrent DescribeHumanLoop calls when filling in failure codes.
DESCRIBE_THREADS = 8
# Pages listed ahead of the writers with a single paginator (A2I_SYNC_SLICES=1):
# listing and writing overlap.
PREFETCH_PAGES = 2
# Deletion marks are written in batches of this many ids.
DELETE_BATCH = 2000
# A run that inserted this many loops (a first sync) refreshes the planner's statistics.
ANALYZE_AFTER_CREATED = 10_000
# PostgreSQL's default is 100 (30,000 sampled rows); see _analyze.
ANALYZE_STATISTICS_TARGET = 10
# The columns of the loop table that the dashboard's queries filter and sort on.
ANALYZED_FIELDS = (
    "id", "flow_definition", "status", "creation_time", "deleted_upstream", "status_changed_at", "first_seen_at",
    "answers_state", "answers_next_attempt_at", "review_seconds",
)

PageHook = Callable[[SyncRun], None]


def sync_flow_definition(flow_definition_id: int, *, full: bool, page_hook: PageHook | None = None) -> SyncRun:
    """Sync one flow definition's loops from A2I (see the module docstring); return its SyncRun.

    Returns a SyncRun with outcome "skipped" when another sync holds the claim,
    "failed" (with `error`) when A2I answered an error after botocore's retries,
    "succeeded" otherwise. A2IUnavailable is recorded the same way and then
    re-raised, so callers can tell "cannot reach AWS at all" apart (the task
    retries it, the command prints it). `page_hook(run)` is called after each
    committed page (tests inject failures with it).
    """
    fd = FlowDefinition.objects.get(pk=flow_definition_id)
    run, claimed_until = start_run(fd, full=full)
    if claimed_until is None:
        return run
    return run_claimed(fd, run, claimed_until, page_hook)


def run_claimed(fd: FlowDefinition, run: SyncRun, claimed_until: list[datetime], page_hook: PageHook | None = None) -> SyncRun:
    """Steps 2-6 of a sync whose claim and SyncRun `start_run` made; same outcomes as
    sync_flow_definition."""
    # The last pages, the failed loops described and the statistics refresh: one
    # announcement to the page cache when the run ends (long runs announce every second).
    with page_cache.one_announcement():
        return _run_claimed(fd, run, claimed_until, page_hook)


def _run_claimed(fd: FlowDefinition, run: SyncRun, claimed_until: list[datetime], page_hook: PageHook | None) -> SyncRun:
    try:
        run.listed_from = None if run.kind == SyncRun.Kind.FULL else _incremental_start(fd)
        _run(fd, run, page_hook, claimed_until)
    except (a2i.ClientError, a2i.A2IUnavailable) as exc:
        finish_failed(fd, run, a2i.error_message(exc))
        if isinstance(exc, a2i.A2IUnavailable):
            raise
        return run
    except BaseException as exc:
        finish_failed(fd, run, f"{exc.__class__.__name__}: {exc}")
        raise
    finally:
        FlowDefinition.objects.filter(pk=fd.pk, sync_claimed_until=claimed_until[0]).update(sync_claimed_until=None)
    finish_succeeded(fd, run)
    return run


def start_run(fd: FlowDefinition, *, full: bool) -> tuple[SyncRun, list[datetime] | None]:
    """Claim `fd` and record a running SyncRun; `(run, claim)`, or `(skipped run, None)`.

    Side effects: a SyncRun still "running" from a killed worker is closed as failed.
    """
    kind = SyncRun.Kind.FULL if full else SyncRun.Kind.INCREMENTAL
    started = timezone.now()
    claimed_until = _claim(fd, started)
    if claimed_until is None:
        return SyncRun.objects.create(
            flow_definition=fd, region=fd.region, kind=kind, started_at=started, finished_at=started,
            outcome=SyncRun.Outcome.SKIPPED, error="another sync of this flow definition is running",
        ), None
    # We own the flow definition: a run still "running" was interrupted (worker killed).
    SyncRun.objects.filter(flow_definition=fd, outcome=SyncRun.Outcome.RUNNING).update(
        outcome=SyncRun.Outcome.FAILED, finished_at=started, error="interrupted: the sync process stopped before finishing"
    )
    return SyncRun.objects.create(flow_definition=fd, region=fd.region, kind=kind, started_at=started), claimed_until


def finish_succeeded(fd: FlowDefinition, run: SyncRun) -> None:
    """Record a successful run (its counters too) on the run and the flow definition; refresh stats if due."""
    now = timezone.now()
    run.outcome, run.finished_at = SyncRun.Outcome.SUCCEEDED, now
    run.save(update_fields=["outcome", "finished_at", "listed_from", "pages", "loops_seen", "created", "updated", "marked_deleted"])
    fd_fields = {"last_sync_succeeded_at": now, "last_sync_error": ""}
    if run.kind == SyncRun.Kind.FULL:
        fd_fields["last_full_sync_succeeded_at"] = now
    FlowDefinition.objects.filter(pk=fd.pk).update(**fd_fields)
    # Stops and deletes A2I never answered: what this listing saw settles them.
    settle_after_sync(fd.pk, listed_at=run.started_at, full=run.kind == SyncRun.Kind.FULL)
    if run.created >= ANALYZE_AFTER_CREATED:
        _analyze()
    if _stats_due(fd, run, now):
        refresh_flow_definition_stats(fd)  # announces its own change
    # Deletions marked (pages announced theirs), an error banner cleared. A run that
    # changed nothing announces nothing: cached pages survive the idle incremental syncs.
    if run.marked_deleted or fd.last_sync_error:
        page_cache.data_changed()


def _analyze() -> None:
    """ANALYZE the loop table (PostgreSQL), right after a bulk insert.

    Until autovacuum's own ANALYZE comes round (a minute or more later), the planner
    still believes the table holds what it held before a first sync: on 1,000,000
    loops it then answered the loop list's deep pages with a sequential scan and a sort
    (430 ms instead of 10 ms) and the overview's counts likewise. A quick one: only the
    columns the dashboard's queries filter and sort on (half the time of every column on
    100,000 loops), at statistics target ANALYZE_STATISTICS_TARGET (3,000 sampled rows
    instead of 30,000): enough for the row counts, the few values of status and flow
    definition, and a coarse histogram of the times, which is what those plans need.
    An ANALYZE of some columns leaves autovacuum's counter of changed rows as it was, so
    autovacuum's full ANALYZE still follows. The history table is left to autovacuum too:
    inserting loops writes no history rows (services.sync_sql).
    """
    if connection.vendor != "postgresql":
        return
    columns = ", ".join(HumanLoop._meta.get_field(name).column for name in ANALYZED_FIELDS)
    with connection.cursor() as cursor:
        # SET and RESET rather than SET LOCAL: this may run inside a caller's transaction.
        cursor.execute(f"SET default_statistics_target = {ANALYZE_STATISTICS_TARGET}")
        try:
            cursor.execute(f"ANALYZE {HumanLoop._meta.db_table} ({columns})")
        finally:
            with suppress(DatabaseError):  # an aborted transaction: its rollback undoes the SET
                cursor.execute("RESET default_statistics_target")


def _stats_due(fd: FlowDefinition, run: SyncRun, now: datetime) -> bool:
    # A refresh costs real database time on a big flow definition; an incremental
    # sync every 30 s that changed nothing need not pay it,
    # but the time windows (last 24 h, oldest InProgress age) still move on.
    if run.created or run.updated or run.marked_deleted or fd.stats_refreshed_at is None:
        return True
    return (now - fd.stats_refreshed_at).total_seconds() >= settings.A2I_STATS_MAX_AGE


# --- claim ---------------------------------------------------------------------


def _claim(fd: FlowDefinition, now: datetime) -> list[datetime] | None:
    """Claim `fd` for this sync; None if another live sync holds it.

    A conditional UPDATE whose row count says who won (no long lock, works across
    workers and hosts); the claim expires so a killed worker cannot block the
    flow definition forever. Returns a one-item list holding the claim's expiry,
    which `_renew` moves forward during long syncs.
    """
    until = now + timedelta(seconds=settings.A2I_SYNC_CLAIM_SECONDS)
    won = FlowDefinition.objects.filter(
        Q(sync_claimed_until__isnull=True) | Q(sync_claimed_until__lt=now), pk=fd.pk
    ).update(sync_claimed_until=until, last_sync_started_at=now)
    return [until] if won == 1 else None


def _renew(fd: FlowDefinition, claimed_until: list[datetime]) -> None:
    """Extend our claim when half of it has run out (a million-loop listing can be long)."""
    now = timezone.now()
    period = timedelta(seconds=settings.A2I_SYNC_CLAIM_SECONDS)
    if claimed_until[0] - now < period / 2:
        until = now + period
        if FlowDefinition.objects.filter(pk=fd.pk, sync_claimed_until=claimed_until[0]).update(sync_claimed_until=until):
            claimed_until[0] = until


# --- the run -------------------------------------------------------------------


def _incremental_start(fd: FlowDefinition) -> datetime | None:
    """Where an incremental listing starts; None (list everything) when nothing is stored.

    Terminal loops never change except by deletion, so everything older than both
    the oldest non-terminal loop and the newest loop seen is settled history.
    """
    stored = HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False)
    newest = stored.aggregate(newest=Max("creation_time"))["newest"]
    if newest is None:
        return None
    candidates = [newest]
    for status in ACTIVE_STATUSES:  # one index range scan each (loop_fd_status_created)
        oldest = stored.filter(status=status).order_by("creation_time").values_list("creation_time", flat=True).first()
        if oldest is not None:
            candidates.append(oldest)
    return min(candidates) - timedelta(seconds=settings.A2I_INCREMENTAL_MARGIN)


def _run(fd: FlowDefinition, run: SyncRun, page_hook: PageHook | None, claimed_until: list[datetime]) -> None:
    seen: set[int] = set()  # row ids of every listed loop: ~8 MB per million
    limit = settings.A2I_SYNC_DESCRIBE_LIMIT
    newly_failed: list[int] = []  # at most `limit` ids: memory stays bounded
    listing = new_listing(fd, start=run.listed_from, end=None, until=run.started_at)
    try:
        # closing(): on an error, stop the lister threads and close the writer connections
        # now, not whenever the traceback is garbage-collected.
        with closing(listing), closing(write_pages(fd, listing)) as written:
            _merge_pages(fd, run, written, seen, newly_failed, limit, page_hook, claimed_until)
    except (a2i.ClientError, a2i.A2IUnavailable):
        # The listing failed after botocore's retries. Every page it listed was written
        # and merged first (write_pages drains them), so the slices that had been
        # listed to their end are complete: their deletions can be marked.
        if listing.error is not None:
            run.marked_deleted = mark_unlisted_deleted(fd, run, seen, listing.completed_ranges())
        raise
    run.marked_deleted = mark_unlisted_deleted(fd, run, seen, listing.completed_ranges())
    # Incremental: only the loops this run saw fail (the rows it changed anyway).
    # Full: also a bounded slice of the backlog of older Failed loops without a code.
    backlog = limit - len(newly_failed) if run.kind == SyncRun.Kind.FULL else 0
    describe_failures(fd, newly_failed, backlog)


def new_listing(fd: FlowDefinition, *, start: datetime | None, end: datetime | None, until: datetime,
                split_start: bool = False) -> SlicedListing:
    """The listing of `fd`'s loops created in [start, end), as up to A2I_SYNC_SLICES slices."""
    slices = max(1, settings.A2I_SYNC_SLICES)
    return SlicedListing(
        fd.region, fd.arn, start=start, end=end, until=until, split_start=split_start, slices=slices,
        # One page waiting per lister (two for a single paginator): listing stays ahead of
        # the writers without holding more than a few pages in memory.
        queue_pages=max(PREFETCH_PAGES, slices),
    )


def _merge_pages(fd, run, written, seen, newly_failed, limit, page_hook, claimed_until) -> None:
    """Fold each written page into the run: seen ids, newly failed ids, counters; renew the claim."""
    progress_saved = 0.0
    for page in written:
        seen.update(page.ids)
        newly_failed.extend(page.failed_ids[: max(0, limit - len(newly_failed))])
        run.pages += page.pages
        run.loops_seen += page.listed
        run.created += page.created
        run.updated += page.updated
        # Progress for the sync page, at most once a second (a database round trip
        # per page is a measurable share of a full sync); the final figures are saved when
        # the run ends.
        if page_hook is not None or time.monotonic() - progress_saved >= 1.0:
            progress_saved = time.monotonic()
            _save_counters(run)
        _renew(fd, claimed_until)
        if page_hook is not None:
            page_hook(run)


def _save_counters(run: SyncRun, **extra) -> None:
    SyncRun.objects.filter(pk=run.pk).update(
        pages=run.pages, loops_seen=run.loops_seen, created=run.created, updated=run.updated,
        marked_deleted=run.marked_deleted, **extra
    )


Range = tuple[datetime | None, datetime | None]


def mark_unlisted_deleted(fd: FlowDefinition, run: SyncRun, seen: set[int], ranges: list[Range]) -> int:
    """Mark deleted upstream the stored loops of the listed ranges that the listing did not return.

    `ranges`: the [lo, hi) creation-time ranges listed to their end (a failed slice's
    range is not among them). Within them, only loops created before this sync began,
    and (incremental) strictly after the listing's start, since A2I does not document
    whether CreationTimeAfter is inclusive. Any loop of a range listed to its end that
    is missing was deleted, terminal or not. Ids are streamed; only `seen` is held in
    memory. Each UPDATE checks the range again: a loop whose name was reused may have
    moved into another range (by a concurrent slice task) since its id was read.
    """
    now = timezone.now()
    marked = 0
    for lo, hi in ranges:
        in_range = Q(creation_time__lt=run.started_at)
        if run.listed_from is not None:
            in_range &= Q(creation_time__gt=run.listed_from)
        if lo is not None:
            in_range &= Q(creation_time__gte=lo)
        if hi is not None:
            in_range &= Q(creation_time__lt=hi)
        candidates = HumanLoop.objects.filter(in_range, flow_definition=fd, deleted_upstream=False)
        batch = []
        for loop_id in candidates.values_list("id", flat=True).iterator(chunk_size=10_000):
            if loop_id not in seen:
                batch.append(loop_id)
                if len(batch) >= DELETE_BATCH:
                    marked += _mark_ids_deleted(batch, in_range, now)
                    batch = []
        if batch:
            marked += _mark_ids_deleted(batch, in_range, now)
    return marked


def _mark_ids_deleted(ids: list[int], in_range: Q, now: datetime) -> int:
    return HumanLoop.objects.filter(in_range, id__in=ids, deleted_upstream=False).update(
        deleted_upstream=True, deleted_upstream_at=now, last_seen_at=now
    )


def describe_failures(fd: FlowDefinition, loop_ids: list[int], backlog: int) -> None:
    """Describe Failed loops to store their FailureCode and output URI (ListHumanLoops omits both).

    `loop_ids`: loops this sync saw become Failed. `backlog`: how many other Failed
    loops without a code to describe as well (oldest history gets filled over several
    full syncs: a few calls per run, never thousands at once). A loop already gone is
    left for deletion marking; other ClientErrors propagate.
    """
    loops = list(HumanLoop.objects.filter(id__in=loop_ids).only("id", "name", "output_s3_uri"))
    if backlog > 0:
        loops += list(
            HumanLoop.objects.filter(
                flow_definition=fd, deleted_upstream=False, status=HumanLoopStatus.FAILED, failure_code=""
            )
            .exclude(id__in=loop_ids)
            .order_by("-creation_time")
            .only("id", "name", "output_s3_uri")[:backlog]
        )
    if not loops:
        return

    def describe(loop: HumanLoop) -> dict | None:
        try:
            return a2i.describe_human_loop(fd.region, loop.name)
        except a2i.ClientError as exc:
            if a2i.error_code(exc) == "ResourceNotFoundException":
                return None
            raise

    # A few calls in flight at once: each is a round trip, and the incremental sync's
    # budget is one second. The database writes stay in this thread.
    with ThreadPoolExecutor(max_workers=DESCRIBE_THREADS, thread_name_prefix="a2i-describe") as pool:
        described_loops = list(pool.map(describe, loops))
    with transaction.atomic():
        for loop, described in zip(loops, described_loops, strict=True):
            if described is None:
                continue
            code = described.get("FailureCode") or ""
            uri = (described.get("HumanLoopOutput") or {}).get("OutputS3Uri") or loop.output_s3_uri
            HumanLoop.objects.filter(pk=loop.pk).update(failure_code=code, output_s3_uri=uri)
        page_cache.data_changed()


def finish_failed(fd: FlowDefinition, run: SyncRun, message: str) -> None:
    """Record a failed run (its counters so far) and the error on the flow definition."""
    log.warning("sync of %s failed: %s", fd.arn, message)
    run.outcome, run.error, run.finished_at = SyncRun.Outcome.FAILED, message, timezone.now()
    _save_counters(run, outcome=run.outcome, error=message, finished_at=run.finished_at, listed_from=run.listed_from)
    FlowDefinition.objects.filter(pk=fd.pk).update(last_sync_error=message)
    page_cache.data_changed()
