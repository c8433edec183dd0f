"""Writing listed pages: each page in its own transaction, on up to A2I_SYNC_WRITERS connections.

PostgreSQL does most of a full sync's work (index maintenance for every new loop),
and one connection uses one CPU. With two writer connections, one page is written
while the next is prepared and another is in PostgreSQL, so listing, Python and
PostgreSQL overlap. Pages hold disjoint loops, so their transactions never touch
the same rows; the results are merged in listing order by the caller.

A writer thread needs its own database connection, which cannot see rows of an
uncommitted outer transaction; when the caller is inside one (tests wrapped in a
transaction), pages are written on the caller's connection instead.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections, reset_queries, transaction
from django.utils import timezone

from loops import a2i
from loops.models import TERMINAL_STATUSES, FlowDefinition, HumanLoopStatus
from loops.services import page_cache, sync_sql
from loops.services.sync_listing import Listed
from loops.services.sync_sql import LoopChange

# Seconds between two announcements of a sync's writes to the page cache (loops.services.page_cache).
ANNOUNCE_EVERY = 1.0


@dataclass(slots=True)
class PageResult:
    pages: int = 0  # ListHumanLoops pages written together
    listed: int = 0
    created: int = 0
    updated: int = 0
    ids: list[int] = field(default_factory=list)  # the row id of every listed loop
    failed_ids: list[int] = field(default_factory=list)  # loops that just became Failed


def write_pages(fd: FlowDefinition, pages: Iterable[Listed]) -> Iterator[PageResult]:
    """Write each batch of listed loops in its own transaction; yield their results.

    A page's result is yielded once its transaction has committed; pages of different
    listing slices come in whatever order the listing hands them over. An exception of
    the listing propagates after the results of every page already taken from it (the
    caller merges them, so a failed sync still knows every loop it wrote); a database
    error propagates after the pages in flight have finished. Every committed page
    stays committed.

    Pages that inserted or changed loops are announced to the page cache at most once
    every ANNOUNCE_EVERY seconds, and at the end: every announcement drops the cached
    pages of every user, and a sync writes dozens of pages a second. (In a sync run the
    one at the end waits for the run's own: page_cache.one_announcement.)
    """
    announced, unannounced = time.monotonic(), False
    try:
        for result in _write_pages(fd, pages):
            unannounced = unannounced or bool(result.created or result.updated)
            if unannounced and time.monotonic() - announced >= ANNOUNCE_EVERY:
                page_cache.data_changed(at_once=True)
                announced, unannounced = time.monotonic(), False
            yield result
    finally:
        if unannounced:
            page_cache.data_changed()


def _write_pages(fd: FlowDefinition, pages: Iterable[Listed]) -> Iterator[PageResult]:
    writers = settings.A2I_SYNC_WRITERS
    if writers <= 1 or connection.in_atomic_block:
        with sync_sql.page_write_session():
            for batch in pages:
                result = write_page(fd, batch.summaries, pages=batch.pages)
                # DEBUG keeps every SQL statement in memory; a million-loop sync must not.
                reset_queries()
                yield result
        return

    local = threading.local()
    opened = []
    opened_lock = threading.Lock()

    def on_writer_thread(batch: Listed) -> PageResult:
        if not getattr(local, "ready", False):
            conn = connections[DEFAULT_DB_ALIAS]
            conn.inc_thread_sharing()  # so the calling thread may close it at the end
            with opened_lock:
                opened.append(conn)
            sync_sql.configure_page_session()
            local.ready = True
        try:
            return write_page(fd, batch.summaries, pages=batch.pages)
        finally:
            reset_queries()

    pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="sync-writer")
    pending: deque = deque()
    listing = iter(pages)
    try:
        while True:
            try:
                batch = next(listing)
            except StopIteration:
                break
            except Exception:
                while pending:
                    yield pending.popleft().result()
                raise
            pending.append(pool.submit(on_writer_thread, batch))
            if len(pending) >= writers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True)
        for conn in opened:
            conn.close()


def write_page(fd: FlowDefinition, summaries: list[dict], *, pages: int = 1) -> PageResult:
    """Upsert HumanLoopSummaries (`pages` ListHumanLoops pages) in one transaction; writes only what changed."""
    now = timezone.now()
    # Columns straight from the summaries: this loop runs once per listed loop while the
    # listing threads wait for the GIL, so it builds nothing per loop it does not need.
    page = sync_sql.ListedPage(a2i.human_loop_arn(fd.arn, ""), output_prefix(fd))
    for summary in summaries:
        page.add(summary["HumanLoopName"], summary["HumanLoopStatus"], summary["CreationTime"],
                 summary.get("FailureReason") or "")
    result = PageResult(pages=pages, listed=len(page))
    with transaction.atomic():
        inserted, stored = sync_sql.insert_new_and_fetch_stored(fd.pk, page, now)
        for loop_id, status in inserted:
            result.ids.append(loop_id)
            if status == HumanLoopStatus.FAILED:
                result.failed_ids.append(loop_id)
        changes = []
        for arn, old in stored.items():
            result.ids.append(old.id)
            status, created, reason = page.fields(arn)
            if (old.status, old.creation_time, old.failure_reason, old.deleted_upstream, old.flow_definition_id) == (
                status, created, reason, False, fd.pk
            ):
                continue
            row = page.row(arn)
            reborn = old.creation_time != row.creation_time  # the name was reused after a delete: a new loop
            if not reborn and old.status in TERMINAL_STATUSES and row.status not in TERMINAL_STATUSES:
                # A2I never moves a loop back; this page was listed before an event (or an
                # action) recorded the end of the loop. The next listing agrees.
                continue
            if reborn or old.status != row.status:
                changes.append(LoopChange(old.id, row, "" if reborn else old.status))
                if row.status == HumanLoopStatus.FAILED:
                    result.failed_ids.append(old.id)
            else:
                changes.append(LoopChange(old.id, row, None))
        sync_sql.update_loops(fd.pk, changes, now)
    result.created, result.updated = len(inserted), len(changes)
    return result


def output_prefix(fd: FlowDefinition) -> str:
    """What every output URI of this flow definition starts with ("" when it has no output path)."""
    return f"{fd.output_s3_path.rstrip('/')}/{fd.name}/" if fd.output_s3_path else ""

