"""Sync under failure: crashes mid-listing, throttling and 5xx, retries exhausted, concurrency."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop, SyncRun
from loops.services.discovery import discover_flow_definitions
from loops.services.sync import PREFETCH_PAGES, sync_flow_definition
from loops.services.sync_listing import BATCH_PAGES
from tests.conftest import requires_postgresql

from .conftest import list_a2i

pytestmark = pytest.mark.django_db


def seeded_flow_definition(aws, loops: int):
    """A flow definition with `loops` loops of mixed statuses, created directly in A2I Local's store."""
    arn = aws.create_flow_definition("seeded")
    for i in range(loops):
        name = aws.store.start_human_loop(f"seeded-{i}", arn, "{}")["HumanLoopName"]
        if i % 3 == 0:
            aws.store.fail_loop(name, "Expired", "expired")
    discover_flow_definitions([aws.region])
    return FlowDefinition.objects.get(arn=arn)


def test_a_crash_after_k_pages_keeps_those_pages_and_the_next_run_completes(aws, settings):
    settings.A2I_MAX_ATTEMPTS = 1
    # One paginator, so "k pages" is a position in the listing (slices: test_sync_slices.py).
    settings.A2I_SYNC_SLICES = 1
    a2i_api.reset_clients()
    fd = seeded_flow_definition(aws, 1000)
    k = 3

    def break_a2i_after_k_pages(run):
        # A real failure: from now on A2I Local answers every call with a 500.
        if run.pages >= k:
            aws.configure(error_rate=1.0)

    run = sync_flow_definition(fd.pk, full=True, page_hook=break_a2i_after_k_pages)

    assert run.outcome == SyncRun.Outcome.FAILED
    assert "InternalServerException" in run.error
    # Pages already fetched ahead when A2I broke are written too (the pages waiting are
    # written as one batch); nothing else is.
    assert k <= run.pages <= k + BATCH_PAGES + PREFETCH_PAGES + 1
    assert HumanLoop.objects.filter(flow_definition=fd).count() == run.pages * 100 == run.loops_seen
    fd.refresh_from_db()
    assert fd.last_sync_error == run.error and fd.sync_claimed_until is None

    aws.configure(error_rate=0.0)
    second = sync_flow_definition(fd.pk, full=True)

    assert second.outcome == SyncRun.Outcome.SUCCEEDED, second.error
    assert (second.loops_seen, second.created, second.marked_deleted) == (1000, 1000 - run.pages * 100, 0)
    assert HumanLoop.objects.filter(flow_definition=fd).count() == 1000
    fd.refresh_from_db()
    assert fd.last_sync_error == ""


def test_sync_converges_with_throttling_and_server_errors(aws, settings):
    settings.A2I_MAX_ATTEMPTS = 10
    settings.A2I_SYNC_DESCRIBE_LIMIT = 5
    a2i_api.reset_clients()
    fd = seeded_flow_definition(aws, 1500)
    # Throttling (429 ThrottlingException, A2I Local's token bucket: the client asks for pages
    # faster than 2 per second) plus 5% server errors (500); botocore retries both. (The
    # bucket's burst is 2 calls, so the slices' first fan-out is throttled whatever the pace.)
    aws.configure(error_rate=0.05, throttle_tps=2)
    attempts = []
    a2i_api.listing_client(aws.region).meta.events.register(
        "needs-retry.sagemaker-a2i-runtime.ListHumanLoops",
        lambda response=None, **kw: attempts.append((response[1].get("Error") or {}).get("Code") if response else None),
    )

    run = sync_flow_definition(fd.pk, full=True)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    throttled = attempts.count("ThrottlingException") / len(attempts)
    print(f"ListHumanLoops attempts={len(attempts)} throttled={throttled:.0%} 500s={attempts.count('InternalServerException')}")
    # The faults really happened. Fewer calls are throttled than the client's own pace
    # would cause: adaptive retry mode slows the client down after the first ones.
    assert attempts.count("ThrottlingException") >= 2 and throttled > 0.05
    aws.configure(error_rate=0.0, throttle_tps=None)
    stored = dict(HumanLoop.objects.filter(flow_definition=fd).values_list("name", "status"))
    assert stored == {name: s["HumanLoopStatus"] for name, s in list_a2i(aws, fd.arn).items()}
    assert run.loops_seen == 1500


def test_retries_exhausted_mark_the_run_failed_and_the_next_run_starts_cleanly(aws, settings):
    settings.A2I_MAX_ATTEMPTS = 2
    a2i_api.reset_clients()
    fd = seeded_flow_definition(aws, 150)
    aws.configure(error_rate=1.0)

    run = sync_flow_definition(fd.pk, full=False)

    assert run.outcome == SyncRun.Outcome.FAILED and run.finished_at
    assert run.error.startswith("ListHumanLoops: InternalServerException")
    fd.refresh_from_db()
    assert fd.last_sync_error == run.error and fd.sync_claimed_until is None
    assert HumanLoop.objects.count() == 0

    aws.configure(error_rate=0.0)
    second = sync_flow_definition(fd.pk, full=False)
    assert (second.outcome, second.created) == (SyncRun.Outcome.SUCCEEDED, 150)
    fd.refresh_from_db()
    assert fd.last_sync_error == "" and fd.last_sync_succeeded_at


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_syncs_of_one_flow_definition_one_runs_the_other_skips(aws):
    fd = seeded_flow_definition(aws, 250)
    first_is_listing, second_done = threading.Event(), threading.Event()
    outcomes = {}

    def hold_first_run(run):
        # Keep the first sync mid-listing until the second one has tried.
        first_is_listing.set()
        second_done.wait(timeout=30)

    def first():
        try:
            outcomes["first"] = sync_flow_definition(fd.pk, full=True, page_hook=hold_first_run)
        finally:
            connection.close()

    def second():
        try:
            first_is_listing.wait(timeout=30)
            outcomes["second"] = sync_flow_definition(fd.pk, full=True)
        finally:
            second_done.set()
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes["first"].outcome == SyncRun.Outcome.SUCCEEDED
    assert outcomes["second"].outcome == SyncRun.Outcome.SKIPPED
    assert outcomes["second"].pages == 0
    assert HumanLoop.objects.filter(flow_definition=fd).count() == 250
    assert FlowDefinition.objects.get(pk=fd.pk).sync_claimed_until is None


def test_an_expired_claim_of_a_killed_worker_does_not_block_the_next_sync(aws):
    fd = seeded_flow_definition(aws, 10)
    # A worker died holding the claim, leaving its SyncRun "running".
    stale = SyncRun.objects.create(flow_definition=fd, kind="full", started_at=timezone.now())
    FlowDefinition.objects.filter(pk=fd.pk).update(sync_claimed_until=timezone.now() - timedelta(seconds=1))

    run = sync_flow_definition(fd.pk, full=False)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED
    stale.refresh_from_db()
    assert stale.outcome == SyncRun.Outcome.FAILED and "interrupted" in stale.error
