"""Listing one flow definition's loops as concurrent creation-time slices.

ListHumanLoops filters by CreationTimeAfter / CreationTimeBefore, so a flow
definition's history can be listed as independent ranges at once: with 50 ms per
call, one paginator is bound to 20 pages a second whatever the machine, while K
slices make K calls at a time.

How the range is cut (`SlicedListing`):

1. One slice starts at the beginning of the range (the incremental start, or no
   bound for a full sync) and lists Ascending. Its first page says where the loops
   begin and how dense they are.
2. Whenever a lister thread is idle and the writers are waiting for pages (the
   listing, not the database, is the bottleneck: A2I's latency), the running slice
   with the most loops still expected (its remaining time range times the density it
   has seen, and at least as many as it has listed) is split at whole-millisecond
   boundaries: it keeps the lower part, the new slices take the rest. A slice that turns out dense is therefore split
   again, and a sparse one is left alone. A slice is split only into parts of at least
   MIN_SPLIT_LOOPS expected loops, so a listing of a few pages (most incremental syncs)
   stays one paginator.
3. A slice owns [lo, hi): it asks A2I for 1 ms more on each side and keeps only its
   own range. A2I's timestamps have millisecond precision, so a loop created exactly
   on a boundary is listed by exactly one slice whether A2I's filters are inclusive
   or exclusive (docs/a2i-local.md §2 leaves that unsettled; A2I Local implements
   After as >= and Before as <). A slice whose upper bound moved down while its
   paginator was running (a split) stops at the first loop past its new bound.
4. The first error (ClientError after botocore's retries, A2IUnavailable) stops the
   listing: no new slice starts, running ones stop after their current page, and
   the error is raised to the consumer after every page already listed. Slices that
   were listed to their end are `completed_ranges()`; the sync marks deletions only
   there.

Throttling is shared through the one botocore client every thread uses (adaptive
retry mode: one client-side rate limiter), so K slices back off together. Once A2I has
answered ThrottlingException during a listing, it cuts no new slices: under A2I's rate
limit more slices do not list faster, and each new boundary costs a partial page.
Memory is bounded: at most `queue_pages` pages wait for the writers, plus one page
per lister thread. Pages waiting together are handed over as one batch (BATCH_PAGES).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from loops import a2i

# A2I's timestamps are whole milliseconds: boundaries are too, and each slice asks
# for one more millisecond on each side (see the module docstring).
MS = timedelta(milliseconds=1)
# A slice is split only when it still expects at least this many loops per part:
# ten pages, so the partial page a boundary costs is a small share of the calls it saves
# (and an incremental sync of a few pages is not split at all).
MIN_SPLIT_LOOPS = 1000
# ListHumanLoops' largest page (MaxResults), the size the sync asks for.
PAGE_SIZE = 100
# Pages already waiting when the writers ask for the next one are handed over together
# (up to this many) and written in one statement and transaction: PostgreSQL's cost per
# statement and per commit is then shared by more loops.
BATCH_PAGES = 5

PENDING, RUNNING, DONE, FAILED, ABANDONED = "pending", "running", "done", "failed", "abandoned"


@dataclass(slots=True)
class Listed:
    """Loops listed by one or more ListHumanLoops pages (`pages`), handed to the writers together."""

    summaries: list[dict]
    pages: int


@dataclass(eq=False)
class Slice:
    """Loops created in [lo, hi) (None: unbounded on that side)."""

    lo: datetime | None
    hi: datetime | None
    # lo was chosen by a split (so the request widens it by 1 ms); the first slice
    # sends the sync's own start unchanged.
    split_lo: bool = False
    state: str = PENDING
    first: datetime | None = None  # creation time of the first loop fetched
    position: datetime | None = None  # creation time of the last loop fetched
    listed: int = 0  # loops kept (in range)
    # The last page was not full: A2I fills every page but the last, so this slice is
    # ending and splitting it would only cost calls.
    ending: bool = False

    def expected_remaining(self, until: datetime) -> float:
        """Loops this slice still expects to list: its remaining time range times the
        density seen so far, or at least as many as it has listed already (creation rates
        come in bursts; a slice that keeps listing is dense whatever its average says)."""
        if self.position is None or self.first is None or self.ending:
            return 0.0
        end = self.hi if self.hi is not None else max(until, self.position)
        remaining = (end - self.position).total_seconds()
        if remaining <= 0:
            return 0.0
        covered = (self.position - (self.lo if self.lo is not None else self.first)).total_seconds()
        if covered <= 0:  # every loop so far in one millisecond: no density to go by
            return float(self.listed)
        return max(self.listed / covered * remaining, float(self.listed))


def ceil_ms(moment: datetime) -> datetime:
    return moment + timedelta(microseconds=(-moment.microsecond) % 1000)


class SlicedListing:
    """Iterate over the loops (`Listed`: the HumanLoopSummaries of one or more pages) of a
    flow definition created in [start, end), listed by up to `slices` threads.

    `start` None: from the first loop; `end` None: up to the last one, including loops
    created while the listing runs. `until` is where an open-ended slice is assumed to
    end when it is split (the sync's start). `split_start`: `start` is a boundary chosen
    by a split (a distributed slice), so it is widened and filtered like the others.
    Call close() (or use contextlib.closing) to stop the threads early.
    """

    def __init__(self, region: str, flow_definition_arn: str, *, start: datetime | None, end: datetime | None,
                 until: datetime, slices: int, queue_pages: int, split_start: bool = False):
        self.region = region
        self.arn = flow_definition_arn
        self.until = until
        self.threads = max(1, slices)
        self.slices = [Slice(lo=start, hi=end, split_lo=split_start)]
        self.error: BaseException | None = None
        self._pending: deque[Slice] = deque(self.slices)
        self._running: list[Slice] = []
        self._cond = threading.Condition()
        self._pages: queue.Queue = queue.Queue(maxsize=max(1, queue_pages))
        self._failed = threading.Event()  # stop listing: an error
        self._closed = threading.Event()  # stop everything: the consumer is gone
        self._workers: list[threading.Thread] = []
        self._alive = 0
        self._starving = False  # the consumer is waiting for a page
        self.splits = 0
        self._throttles_at_start = a2i.listing_throttles(region)

    # --- the consumer's side -------------------------------------------------------

    def __iter__(self) -> Iterator[Listed]:
        self._alive = self.threads
        for n in range(self.threads):
            worker = threading.Thread(target=self._work, name=f"a2i-list-slice-{n}", daemon=True)
            self._workers.append(worker)
            worker.start()
        done = False
        while not done:
            try:
                first = self._pages.get_nowait()
            except queue.Empty:
                # The writers wait for pages: the listing is the bottleneck, more slices help.
                with self._cond:
                    self._starving = True
                    self._cond.notify_all()
                first = self._pages.get()
                with self._cond:
                    self._starving = False
            batch = Listed(first, 1)
            if batch.summaries is None:
                break
            while batch.pages < BATCH_PAGES:  # what is already waiting, never more
                try:
                    more = self._pages.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch.summaries = batch.summaries + more
                batch.pages += 1
            yield batch
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self._closed.set()
        self._failed.set()
        with self._cond:
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)

    def completed_ranges(self) -> list[tuple[datetime | None, datetime | None]]:
        """The [lo, hi) ranges listed to their end, merged where adjacent, in order."""
        with self._cond:
            done = [s for s in self.slices if s.state == DONE]
        done.sort(key=lambda s: (s.lo is not None, s.lo))
        merged: list[list] = []
        for s in done:
            if merged and merged[-1][1] is not None and merged[-1][1] == s.lo:
                merged[-1][1] = s.hi
            else:
                merged.append([s.lo, s.hi])
        return [(lo, hi) for lo, hi in merged]

    def throttled(self) -> bool:
        """A2I has answered ThrottlingException since this listing began, to this listing or another
        of this process in the same region (A2I's rate limit is the account's, per region)."""
        return a2i.listing_throttles(self.region) > self._throttles_at_start

    # --- lister threads ------------------------------------------------------------

    def _offer(self, item) -> bool:
        # Never block forever: the consumer may have stopped (an error while writing).
        while not self._closed.is_set():
            try:
                self._pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            while (piece := self._next_slice()) is not None:
                try:
                    finished = self._list(piece)
                except BaseException as exc:  # handed to the consumer thread
                    with self._cond:
                        piece.state = FAILED
                        self._running.remove(piece)
                        if self.error is None:
                            self.error = exc
                        self._failed.set()
                        self._cond.notify_all()
                    return
                with self._cond:
                    piece.state = DONE if finished else ABANDONED
                    self._running.remove(piece)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._alive -= 1
                last = self._alive == 0
                self._cond.notify_all()
            if last:
                self._offer(None)

    def _next_slice(self) -> Slice | None:
        """The next slice to list: a pending one, else a new part of a running one; None when done."""
        with self._cond:
            while not self._failed.is_set():
                if self._pending:
                    piece = self._pending.popleft()
                elif (piece := self._split()) is None:
                    if not self._running:
                        return None
                    self._cond.wait(timeout=0.5)
                    continue
                piece.state = RUNNING
                self._running.append(piece)
                self._cond.notify_all()
                return piece
            return None

    def _split(self) -> Slice | None:
        """Split the running slice that expects the most loops; return one new part (others pending).

        Called with the lock held. The running slice keeps [position, first boundary);
        every boundary is above its position, so no loop it already kept moves. Only while
        the writers wait for pages: when they are the bottleneck (A2I answers fast), more
        listers would only contend for the interpreter and add partial pages.
        """
        idle = self.threads - len(self._running)
        if idle <= 0 or not self._starving or self.throttled():
            return None
        best, expected = None, 0.0
        for piece in self._running:
            remaining = piece.expected_remaining(self.until)
            if remaining > expected:
                best, expected = piece, remaining
        if best is None or expected < 2 * MIN_SPLIT_LOOPS:
            return None
        parts = int(min(idle + 1, expected // MIN_SPLIT_LOOPS))
        start = best.position
        end = best.hi if best.hi is not None else max(self.until, start)
        step = (end - start) / parts
        bounds = []
        for n in range(1, parts):
            bound = ceil_ms(start + step * n)
            if bound > start and (not bounds or bound > bounds[-1]) and (best.hi is None or bound < best.hi):
                bounds.append(bound)
        if not bounds:
            return None
        new = [Slice(lo=lo, hi=hi, split_lo=True) for lo, hi in zip(bounds, bounds[1:] + [best.hi], strict=True)]
        best.hi = bounds[0]
        self.slices.extend(new)
        self._pending.extend(new[1:])
        self.splits += 1
        return new[0]

    def _list(self, piece: Slice) -> bool:
        """List one slice; True when it was listed to its end, False when stopped early."""
        with self._cond:
            lo, hi = piece.lo, piece.hi
        after = lo - MS if lo is not None and piece.split_lo else lo
        before = hi + MS if hi is not None else None
        pages = a2i.iter_loop_pages(self.region, self.arn, created_after=after, created_before=before)
        for summaries in pages:
            if self._failed.is_set():
                return False
            with self._cond:
                hi = piece.hi  # a split may have moved it down
                kept = [
                    s for s in summaries
                    if (lo is None or s["CreationTime"] >= lo) and (hi is None or s["CreationTime"] < hi)
                ]
                if summaries:
                    if piece.first is None:
                        piece.first = summaries[0]["CreationTime"]
                    piece.position = summaries[-1]["CreationTime"]
                piece.ending = len(summaries) < PAGE_SIZE
                piece.listed += len(kept)
                past_end = hi is not None and bool(summaries) and summaries[-1]["CreationTime"] >= hi
                self._cond.notify_all()  # an idle lister may split this slice now
            if kept and not self._offer(kept):
                return False
            if past_end:
                return True
        return True
