"""The sync's listing as concurrent creation-time slices: every loop exactly once, boundaries,
loops started and deleted during the sync, a failing slice, shared throttling backoff."""

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop, SyncRun
from loops.services import sync as sync_service
from loops.services import sync_listing
from loops.services.discovery import discover_flow_definitions
from loops.services.sync import sync_flow_definition
from loops.services.sync_listing import MS, SlicedListing
from tests.conftest import unique

from .conftest import list_a2i

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_slices(aws, monkeypatch):
    """Slices split from 300 expected loops per part instead of 1,000, so a few thousand
    loops make a test of many slices; and A2I answers after 10 ms, as a remote service
    does, so the listing (not the test database) is what the writers wait for."""
    monkeypatch.setattr(sync_listing, "MIN_SPLIT_LOOPS", 300)
    aws.configure(latency_ms=10)


def flow_definition_with_loops_at(aws, times_ms: list[int], prefix: str = "at") -> tuple[FlowDefinition, list[str]]:
    """A flow definition whose loops were created at exactly these times (ms since the epoch)."""
    arn = aws.create_flow_definition(unique("sliced"))
    names = [f"{prefix}-{n}-{t}" for n, t in enumerate(times_ms)]
    aws.store.insert_loops(arn, list(zip(names, times_ms, strict=True)))
    discover_flow_definitions([aws.region])
    return FlowDefinition.objects.get(arn=arn), names


class ListingSpy:
    """Keeps the SlicedListing each sync builds (the same object, unchanged) so a test can
    read which slices were cut and which ranges were listed to their end."""

    def __init__(self, monkeypatch):
        self.listings: list[SlicedListing] = []
        real = sync_service.new_listing

        def keep(*args, **kwargs):
            listing = real(*args, **kwargs)
            self.listings.append(listing)
            return listing

        monkeypatch.setattr(sync_service, "new_listing", keep)


def boundaries(listing: SlicedListing) -> list:
    return sorted(piece.lo for piece in listing.slices if piece.split_lo)


def test_slices_list_every_loop_exactly_once_when_loops_sit_on_every_millisecond_of_the_boundaries(
    aws, settings, monkeypatch
):
    settings.A2I_SYNC_SLICES = 8
    spy = ListingSpy(monkeypatch)
    now_ms = int(time.time() * 1000)
    # A loop on every millisecond of 3 s: whatever whole-millisecond boundaries the
    # slicing picks, loops sit exactly on them and 1 ms on either side.
    times = list(range(now_ms - 4000, now_ms - 1000))
    fd, names = flow_definition_with_loops_at(aws, times)

    run = sync_flow_definition(fd.pk, full=True)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    [listing] = spy.listings
    cuts = boundaries(listing)
    assert len(cuts) >= 3, "the listing was not sliced: the test proves nothing"
    first, last = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms) for ms in (times[0], times[-1]))
    dense = [cut for cut in cuts if first < cut < last]
    assert dense, cuts
    # Every loop once: a loop listed by two slices would be counted twice in loops_seen
    # (or fail its page on the unique ARN); a lost one would be missing.
    assert (run.loops_seen, run.created, run.marked_deleted) == (3000, 3000, 0)
    stored = set(HumanLoop.objects.filter(flow_definition=fd).values_list("name", flat=True))
    assert stored == set(names)
    # The loop exactly on each boundary and its neighbours are all stored.
    on_cut = {int(cut.timestamp() * 1000) for cut in dense}
    stored_ms = set(
        int(t.timestamp() * 1000) for t in HumanLoop.objects.filter(flow_definition=fd).values_list("creation_time", flat=True)
    )
    assert {ms + d for ms in on_cut for d in (-1, 0, 1)} <= stored_ms


def test_a_slice_keeps_a_loop_on_its_lower_bound_and_leaves_the_one_on_its_upper_bound_to_the_next(aws):
    base = int(time.time() * 1000) - 60_000
    fd, _ = flow_definition_with_loops_at(aws, [base + d for d in (-1, 0, 1, 999, 1000, 1001)])
    lo = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=base)
    hi = lo + timedelta(milliseconds=1000)

    def listed(start, end, split_start):
        listing = SlicedListing(fd.region, fd.arn, start=start, end=end, until=timezone.now(), slices=2,
                                queue_pages=2, split_start=split_start)
        return sorted(int(s["CreationTime"].timestamp() * 1000) - base for batch in listing for s in batch.summaries)

    # [lo, hi) as a slice cut by a split: lower edge inclusive, upper edge exclusive.
    assert listed(lo, hi, True) == [0, 1, 999]
    # Its neighbours take what it leaves, each loop exactly once.
    assert listed(None, lo, False) == [-1]
    assert listed(hi, None, True) == [1000, 1001]
    # The request itself is widened by 1 ms on each side (so either reading of A2I's
    # bounds is covered) and the slice filters: A2I Local's After is >=, Before is <.
    client = a2i_api.runtime_client(fd.region)
    widened = client.list_human_loops(
        FlowDefinitionArn=fd.arn, CreationTimeAfter=lo - MS, CreationTimeBefore=hi + MS, SortOrder="Ascending"
    )["HumanLoopSummaries"]
    assert [int(s["CreationTime"].timestamp() * 1000) - base for s in widened] == [-1, 0, 1, 999, 1000]


def test_loops_started_and_deleted_during_a_sliced_sync_are_each_stored_once_and_the_next_sync_converges(
    aws, settings
):
    settings.A2I_SYNC_SLICES = 8
    now_ms = int(time.time() * 1000)
    times = [now_ms - 600_000 + i * 200 for i in range(2500)]  # 2,500 loops over the last 10 minutes
    fd, names = flow_definition_with_loops_at(aws, times)
    client = aws.client("sagemaker-a2i-runtime")
    to_delete = names[::97]
    started: list[str] = []

    def change_a2i_mid_sync(run):
        if run.pages >= 2 and not started:
            for name in to_delete:
                client.delete_human_loop(HumanLoopName=name)
            for i in range(30):
                name = f"during-{i}"
                client.start_human_loop(HumanLoopName=name, FlowDefinitionArn=fd.arn, HumanLoopInput={"InputContent": "{}"})
                started.append(name)

    run = sync_flow_definition(fd.pk, full=True, page_hook=change_a2i_mid_sync)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert started, "A2I did not change during the sync: the test proves nothing"
    stored = {loop.name: loop for loop in HumanLoop.objects.filter(flow_definition=fd)}
    # Nothing listed twice (fresh database: every listed loop was created once).
    assert run.loops_seen == run.created == len(stored)
    # Every loop that existed throughout the sync is stored and live.
    for name in set(names) - set(to_delete):
        assert not stored[name].deleted_upstream, name

    again = sync_flow_definition(fd.pk, full=True)

    assert again.outcome == SyncRun.Outcome.SUCCEEDED, again.error
    listing = list_a2i(aws, fd.arn)
    live = set(HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False).values_list("name", flat=True))
    assert live == set(listing) == (set(names) - set(to_delete)) | set(started)
    # A loop deleted before its slice listed it was never stored; every other one is marked.
    assert not HumanLoop.objects.filter(flow_definition=fd, name__in=to_delete, deleted_upstream=False).exists()


def test_a_failing_slice_leaves_its_range_unmarked_fails_the_sync_and_keeps_the_other_slices_pages(
    aws, settings, monkeypatch
):
    settings.A2I_SYNC_SLICES = 6
    settings.A2I_MAX_ATTEMPTS = 1
    a2i_api.reset_clients()
    now_ms = int(time.time() * 1000)
    # Sparse old loops (their slices finish first), then a dense recent burst.
    times = [now_ms - 3_600_000 + i * 10_000 for i in range(300)] + [now_ms - 60_000 + i * 10 for i in range(3000)]
    fd, names = flow_definition_with_loops_at(aws, times)
    assert sync_flow_definition(fd.pk, full=True).outcome == SyncRun.Outcome.SUCCEEDED
    client = aws.client("sagemaker-a2i-runtime")
    deleted = names[::25]
    for name in deleted:
        client.delete_human_loop(HumanLoopName=name)
    spy = ListingSpy(monkeypatch)

    def break_a2i_once_a_slice_is_done(run):
        # A real failure: from the moment one slice has listed its loops to its end, A2I
        # Local answers every call with a 500, so the slices still running fail.
        if any(piece.state == "done" and piece.listed for piece in spy.listings[-1].slices):
            aws.configure(error_rate=1.0)

    run = sync_flow_definition(fd.pk, full=True, page_hook=break_a2i_once_a_slice_is_done)
    aws.configure(error_rate=0.0)

    assert run.outcome == SyncRun.Outcome.FAILED
    assert run.error.startswith("ListHumanLoops: InternalServerException")
    fd.refresh_from_db()
    assert fd.last_sync_error == run.error and fd.sync_claimed_until is None
    listing = spy.listings[-1]
    done = listing.completed_ranges()
    assert done and any(piece.state == "failed" for piece in listing.slices)

    def in_done(loop) -> bool:
        return any((lo is None or loop.creation_time >= lo) and (hi is None or loop.creation_time < hi) for lo, hi in done)

    gone = list(HumanLoop.objects.filter(flow_definition=fd, name__in=deleted))
    marked = {loop.name for loop in gone if loop.deleted_upstream}
    assert marked == {loop.name for loop in gone if in_done(loop)}
    assert marked and len(marked) < len(deleted), "both kinds of range should hold a deleted loop"
    assert run.marked_deleted == len(marked)
    # The pages written before the failure are kept (the loops were already stored, so
    # nothing was lost; the counters show the work done).
    assert run.pages > 0 and run.loops_seen > 0
    assert HumanLoop.objects.filter(flow_definition=fd).count() == len(names)

    again = sync_flow_definition(fd.pk, full=True)
    assert again.outcome == SyncRun.Outcome.SUCCEEDED
    assert HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=True).count() == len(deleted)


def throttled_sync(aws, settings, slices: int, loops: int) -> tuple[SyncRun, int, int]:
    """A full sync against A2I Local's ListHumanLoops token bucket; (run, attempts, throttled)."""
    settings.A2I_SYNC_SLICES = slices
    settings.A2I_MAX_ATTEMPTS = 20
    a2i_api.reset_clients()
    now_ms = int(time.time() * 1000)
    fd, _ = flow_definition_with_loops_at(aws, [now_ms - 1_800_000 + i * 200 for i in range(loops)], prefix=f"t{slices}")
    codes = []
    a2i_api.listing_client(aws.region).meta.events.register(
        "needs-retry.sagemaker-a2i-runtime.ListHumanLoops",
        lambda response=None, **kw: codes.append((response[1].get("Error") or {}).get("Code") if response else None),
    )
    aws.configure(throttle_tps=10)
    try:
        run = sync_flow_definition(fd.pk, full=True)
    finally:
        aws.configure(throttle_tps=None)
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.loops_seen == run.created == loops  # converged exactly
    return run, len(codes), codes.count("ThrottlingException")


def test_slices_share_one_throttling_backoff_so_more_slices_do_not_mean_more_throttled_calls(aws, settings):
    assert a2i_api.listing_client(aws.region).meta.config.retries["mode"] == "adaptive"  # one limiter per process
    _, attempts_1, throttled_1 = throttled_sync(aws, settings, slices=1, loops=5000)
    _, attempts_8, throttled_8 = throttled_sync(aws, settings, slices=8, loops=5000)
    share_1, share_8 = throttled_1 / attempts_1, throttled_8 / attempts_8
    print(f"throttled: 1 slice {throttled_1}/{attempts_1} = {share_1:.0%}; 8 slices {throttled_8}/{attempts_8} = {share_8:.0%}")
    assert throttled_1 > 0 and throttled_8 > 0, "the throttle never bit: the test proves nothing"
    # Eight independent paginators against a 10-per-second bucket would each retry on their
    # own schedule; one shared client-side limiter keeps the throttled share where one
    # paginator has it.
    assert share_8 <= share_1 + 0.15


def test_a_listing_that_a2i_throttles_cuts_no_new_slices(aws, settings, monkeypatch):
    # Under A2I's rate limit more slices add calls (each new boundary costs a partial page),
    # not loops per second: once throttled, the slices running finish the range alone.
    spy = ListingSpy(monkeypatch)
    settings.A2I_SYNC_SLICES = 8
    settings.A2I_MAX_ATTEMPTS = 20
    now_ms = int(time.time() * 1000)
    fd, names = flow_definition_with_loops_at(aws, [now_ms - 1_800_000 + i * 300 for i in range(4000)])
    a2i_api.reset_clients()  # a cold rate limiter, as in a new worker process
    splits_at_first_throttle = []

    def note(response=None, **kwargs):
        if response and (response[1].get("Error") or {}).get("Code") == "ThrottlingException" and not splits_at_first_throttle:
            listing = spy.listings[-1]
            with listing._cond:  # a split in progress finishes first; any later one sees the throttle
                splits_at_first_throttle.append(listing.splits)

    a2i_api.listing_client(aws.region).meta.events.register("needs-retry.sagemaker-a2i-runtime.ListHumanLoops", note)
    aws.configure(throttle_tps=8)  # the first fan-out takes the bucket's burst
    try:
        run = sync_flow_definition(fd.pk, full=True)
    finally:
        aws.configure(throttle_tps=None)
    listing = spy.listings[-1]
    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    assert run.loops_seen == len(names)  # converged exactly
    assert listing.throttled() and splits_at_first_throttle, "the throttle never bit: the test proves nothing"
    assert splits_at_first_throttle[0] >= 1  # the fan-out after the first page came before it
    assert listing.splits == splits_at_first_throttle[0]  # and no split after it
