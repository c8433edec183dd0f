"""Loop sync: bring the local copy of one flow definition's loops in line with A2I.

Steps of `sync_flow_definition`, in order:

1. claim the flow definition (a conditional UPDATE; a second sync is skipped);
2. list loops Ascending, from the beginning (full) or from the incremental start
   (the oldest non-terminal loop or the newest loop seen, whichever is older,
   minus A2I_INCREMENTAL_MARGIN), while the next page is prefetched;
3. write each page in its own transaction (services.sync_writer, on up to
   A2I_SYNC_WRITERS connections): new loops inserted and stored rows read in one
   statement, UPDATE of changed ones only, one status history row per transition;
4. mark deleted upstream the stored loops of the listed range that were not
   listed (full: everything created before the sync began);
5. describe the loops this run saw fail, and (full sync) a bounded slice of older
   Failed loops without a FailureCode (ListHumanLoops does not return it);
6. release the claim, whatever happened.

A failure (ClientError once botocore's retries ran out, A2IUnavailable) keeps
every page already committed, marks the SyncRun failed with the message, sets
FlowDefinition.last_sync_error, and releases the claim: the next run converges.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from loops import a2i
from loops.models import ACTIVE_STATUSES, FlowDefinition, HumanLoop, HumanLoopStatus, SyncRun
from loops.services.settlement import settle_after_sync
from loops.services.stats import refresh_flow_definition_stats
from loops.services.sync_writer import write_pages

log = logging.getLogger(__name__)

# Concurrent DescribeHumanLoop calls when filling in failure codes.
DESCRIBE_THREADS = 8
# Pages fetched ahead while the current one is written: listing and writing overlap.
PREFETCH_PAGES = 2
# Deletion marks are written in batches of this many ids.
DELETE_BATCH = 2000

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
    kind = SyncRun.Kind.FULL if full else SyncRun.Kind.INCREMENTAL
    started = timezone.now()
    claimed_until = _claim(fd, started)
    if claimed_until is None:
        return SyncRun.objects.create(
            flow_definition=fd, region=fd.region, kind=kind, started_at=started, finished_at=started,
            outcome=SyncRun.Outcome.SKIPPED, error="another sync of this flow definition is running",
        )
    # We own the flow definition: a run still "running" was interrupted (worker killed).
    SyncRun.objects.filter(flow_definition=fd, outcome=SyncRun.Outcome.RUNNING).update(
        outcome=SyncRun.Outcome.FAILED, finished_at=started, error="interrupted: the sync process stopped before finishing"
    )
    run = SyncRun.objects.create(flow_definition=fd, region=fd.region, kind=kind, started_at=started)
    try:
        run.listed_from = None if full else _incremental_start(fd)
        _run(fd, run, page_hook, claimed_until)
    except (a2i.ClientError, a2i.A2IUnavailable) as exc:
        _finish_failed(fd, run, a2i.error_message(exc))
        if isinstance(exc, a2i.A2IUnavailable):
            raise
        return run
    except BaseException as exc:
        _finish_failed(fd, run, f"{exc.__class__.__name__}: {exc}")
        raise
    finally:
        FlowDefinition.objects.filter(pk=fd.pk, sync_claimed_until=claimed_until[0]).update(sync_claimed_until=None)
    now = timezone.now()
    run.outcome, run.finished_at = SyncRun.Outcome.SUCCEEDED, now
    run.save(update_fields=["outcome", "finished_at", "listed_from", "pages", "loops_seen", "created", "updated", "marked_deleted"])
    fd_fields = {"last_sync_succeeded_at": now, "last_sync_error": ""}
    if full:
        fd_fields["last_full_sync_succeeded_at"] = now
    FlowDefinition.objects.filter(pk=fd.pk).update(**fd_fields)
    # Stops and deletes A2I never answered: what this listing saw settles them.
    settle_after_sync(fd.pk, listed_at=started, full=full)
    if _stats_due(fd, run, now):
        refresh_flow_definition_stats(fd)
    return run


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
    listing = _prefetch(a2i.iter_loop_pages(fd.region, fd.arn, created_after=run.listed_from), PREFETCH_PAGES)
    # closing(): on an error, stop the prefetch thread and close the writer connections
    # now, not whenever the traceback is garbage-collected.
    with closing(listing), closing(write_pages(fd, listing)) as written:
        _merge_pages(fd, run, written, seen, newly_failed, limit, page_hook, claimed_until)
    run.marked_deleted = _mark_unlisted_deleted(fd, run, seen)
    # Incremental: only the loops this run saw fail (the rows it changed anyway).
    # Full: also a bounded slice of the backlog of older Failed loops without a code.
    backlog = limit - len(newly_failed) if run.kind == SyncRun.Kind.FULL else 0
    _describe_failures(fd, newly_failed, backlog)


def _merge_pages(fd, run, written, seen, newly_failed, limit, page_hook, claimed_until) -> None:
    """Fold each written page into the run: seen ids, newly failed ids, counters; renew the claim."""
    progress_saved = 0.0
    for page in written:
        seen.update(page.ids)
        newly_failed.extend(page.failed_ids[: max(0, limit - len(newly_failed))])
        run.pages += 1
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


def _prefetch(pages: Iterator[list[dict]], depth: int) -> Iterator[list[dict]]:
    """Iterate `pages` in a background thread, `depth` pages ahead of the consumer.

    The HTTP call and parsing of page n+1 overlap the database writes of page n
    (both release the GIL while waiting). An exception in the listing is re-raised
    here, after the pages before it.
    """
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        # Never block forever: the consumer may have stopped (an error while writing).
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for page in pages:
                if not offer(("page", page)):
                    return
            offer(("done", None))
        except BaseException as exc:  # handed to the consumer thread
            offer(("error", exc))

    thread = threading.Thread(target=produce, name="a2i-list-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = box.get()
            if kind == "page":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        thread.join(timeout=5)


def _save_counters(run: SyncRun, **extra) -> None:
    SyncRun.objects.filter(pk=run.pk).update(
        pages=run.pages, loops_seen=run.loops_seen, created=run.created, updated=run.updated,
        marked_deleted=run.marked_deleted, **extra
    )


def _mark_unlisted_deleted(fd: FlowDefinition, run: SyncRun, seen: set[int]) -> int:
    """Mark deleted upstream the stored loops of the listed range that the listing did not return.

    Range: created before this sync began, and (incremental) strictly after the
    listing's start, since A2I does not document whether CreationTimeAfter is
    inclusive. Any loop of a range listed to its end that is missing was deleted,
    terminal or not. Ids are streamed; only `seen` is held in memory.
    """
    candidates = HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False, creation_time__lt=run.started_at)
    if run.listed_from is not None:
        candidates = candidates.filter(creation_time__gt=run.listed_from)
    now = timezone.now()
    marked, batch = 0, []
    for loop_id in candidates.values_list("id", flat=True).iterator(chunk_size=10_000):
        if loop_id not in seen:
            batch.append(loop_id)
            if len(batch) >= DELETE_BATCH:
                marked += _mark_ids_deleted(batch, now)
                batch = []
    if batch:
        marked += _mark_ids_deleted(batch, now)
    SyncRun.objects.filter(pk=run.pk).update(marked_deleted=marked)
    return marked


def _mark_ids_deleted(ids: list[int], now: datetime) -> int:
    return HumanLoop.objects.filter(id__in=ids, deleted_upstream=False).update(
        deleted_upstream=True, deleted_upstream_at=now, last_seen_at=now
    )


def _describe_failures(fd: FlowDefinition, loop_ids: list[int], backlog: int) -> None:
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


def _finish_failed(fd: FlowDefinition, run: SyncRun, message: str) -> None:
    log.warning("sync of %s failed: %s", fd.arn, message)
    run.outcome, run.error, run.finished_at = SyncRun.Outcome.FAILED, message, timezone.now()
    _save_counters(run, outcome=run.outcome, error=message, finished_at=run.finished_at, listed_from=run.listed_from)
    FlowDefinition.objects.filter(pk=fd.pk).update(last_sync_error=message)
