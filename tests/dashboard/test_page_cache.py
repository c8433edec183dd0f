"""The page cache (loops.services.page_cache): the overview and the loop list's results are
rendered once per data version and served to everyone until a writer commits a change.

Real Redis (a key prefix of its own per test) and the product's real writers. To see
whether a page came from the cache, a test changes a row with the ORM, which announces
nothing: the cached page still shows the old value, and the next announced write shows
the new one.
"""

import logging
import socket
import uuid
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop
from loops.services import page_cache, sync_writer
from loops.services.answers import claim_batch, due_loops, ingest_loops
from loops.services.discovery import discover_flow_definitions
from loops.services.event_parsing import parse_event
from loops.services.events import apply_events
from loops.services.loop_state import mark_loop_deleted_upstream, set_loop_status
from loops.services.stats import refresh_flow_definition_stats
from loops.services.sync import sync_flow_definition
from loops.services.sync_listing import Listed
from loops.services.sync_writer import write_pages
from tests.conftest import completed_loop_via_a2i, start_loops
from tests.events.conftest import for_loop


@pytest.fixture
def page_cache_on(settings):
    settings.PAGE_CACHE_SECONDS = 10
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": settings.REDIS_URL,
        # A prefix of its own: nothing cached by another test (or run) is found here.
        "KEY_PREFIX": f"test-page-cache-{uuid.uuid4().hex}",
    }}
    assert page_cache.enabled()
    yield settings
    # The fragments expire by themselves; the counter does not.
    cache.delete(page_cache.version_key())


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run the writes in it as if committed: their on_commit announcements run at the end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def loop_list(client, query: str = "", **headers) -> str:
    response = client.get(f"/loops/{query}", headers=headers)
    assert response.status_code == 200
    return response.content.decode()


def test_the_loop_list_is_served_from_the_cache_until_a_writer_commits(world, viewer_client, page_cache_on, commits):
    assert "inv-new" in loop_list(viewer_client)
    HumanLoop.objects.filter(pk=world.inv_new.pk).update(name="inv-renamed")  # announces nothing

    assert "inv-new" in loop_list(viewer_client) and "inv-renamed" not in loop_list(viewer_client)
    # Another query string is another entry, rendered now.
    assert "inv-renamed" in loop_list(viewer_client, "?status=InProgress")

    with commits():
        set_loop_status(world.inv_old, "Stopping")
    page = loop_list(viewer_client)
    assert "inv-renamed" in page and "inv-new" not in page


def test_the_live_refresh_reads_the_same_entry_as_the_page(world, viewer_client, page_cache_on):
    assert "inv-new" in loop_list(viewer_client)
    HumanLoop.objects.filter(pk=world.inv_new.pk).update(name="inv-renamed")
    fragment = loop_list(viewer_client, HX_Request="true")
    assert "inv-new" in fragment and "<html" not in fragment


def test_the_overview_is_served_from_the_cache_until_a_writer_commits(world, viewer_client, page_cache_on, commits):
    assert ">receipts</a>" in viewer_client.get("/").content.decode()
    FlowDefinition.objects.filter(pk=world.fd_rec.pk).update(name="bills")
    assert ">receipts</a>" in viewer_client.get("/").content.decode()
    with commits():
        refresh_flow_definition_stats(world.fd_inv)
    page = viewer_client.get("/").content.decode()
    assert ">bills</a>" in page and ">receipts</a>" not in page


def test_the_rows_checkboxes_follow_the_users_permissions_not_the_cache(world, client, operator, viewer, page_cache_on):
    client.force_login(operator)
    assert 'name="loop" value=' in loop_list(client)
    client.force_login(viewer)
    assert 'name="loop" value=' not in loop_list(client)
    client.force_login(operator)
    assert 'name="loop" value=' in loop_list(client)


def test_a_cache_that_does_not_answer_costs_a_render_not_a_page(world, viewer_client, settings, commits, caplog):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    settings.PAGE_CACHE_SECONDS = 10
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"redis://127.0.0.1:{closed}/0"}}
    caplog.set_level(logging.WARNING, logger="loops.services.page_cache")
    assert "inv-new" in loop_list(viewer_client)
    HumanLoop.objects.filter(pk=world.inv_new.pk).update(name="inv-renamed")
    assert "inv-renamed" in loop_list(viewer_client)
    assert viewer_client.get("/").status_code == 200
    with commits():  # the write itself is not failed by the cache
        assert set_loop_status(world.inv_old, "Stopping") is True
    assert HumanLoop.objects.get(pk=world.inv_old.pk).status == "Stopping"
    assert "page cache: not answering" in caplog.text and "could not bump" in caplog.text


def test_a_process_local_cache_turns_the_page_cache_off(world, viewer_client, settings):
    # make run without Redis: the workers' writes could not reach the web processes' memory.
    settings.PAGE_CACHE_SECONDS = 10
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert not page_cache.enabled()
    assert "inv-new" in loop_list(viewer_client)
    HumanLoop.objects.filter(pk=world.inv_new.pk).update(name="inv-renamed")
    assert "inv-renamed" in loop_list(viewer_client)


# --- every writer of what these pages show announces its change -----------------------------


def bumped(commits, write) -> bool:
    before = page_cache.data_version()
    with commits():
        write()
    return page_cache.data_version() > before


def test_single_loop_writes_announce_their_change(world, page_cache_on, commits):
    assert bumped(commits, lambda: set_loop_status(world.inv_new, "Stopping"))
    assert bumped(commits, lambda: mark_loop_deleted_upstream(world.inv_old))
    assert bumped(commits, lambda: refresh_flow_definition_stats(world.fd_rec))


def test_a_sync_announces_the_pages_it_changed_and_nothing_when_nothing_changed(aws, flow_definition, page_cache_on, commits):
    names = start_loops(aws, flow_definition, 3)
    assert bumped(commits, lambda: sync_flow_definition(flow_definition.pk, full=False))
    # Nothing new in A2I: the idle incremental sync leaves cached pages alone.
    sync_flow_definition(flow_definition.pk, full=False)  # the statistics refresh, if due, announces
    assert not bumped(commits, lambda: sync_flow_definition(flow_definition.pk, full=False))
    aws.complete(names[0], answer={"label": "cat"})
    assert bumped(commits, lambda: sync_flow_definition(flow_definition.pk, full=False))
    aws.client("sagemaker-a2i-runtime").delete_human_loop(HumanLoopName=names[0])
    assert bumped(commits, lambda: sync_flow_definition(flow_definition.pk, full=True))  # marks the deletion


def test_a_syncs_pages_are_announced_once_a_second_and_at_the_end(
    aws, flow_definition, page_cache_on, monkeypatch, django_capture_on_commit_callbacks
):
    names = start_loops(aws, flow_definition, 4)
    client = aws.client("sagemaker-a2i-runtime")

    def listed():
        return Listed(client.list_human_loops(FlowDefinitionArn=flow_definition.arn)["HumanLoopSummaries"], pages=1)

    page = listed()
    with django_capture_on_commit_callbacks() as announced:
        results = []
        for result in write_pages(flow_definition, iter([page] * 3)):  # the same page again changes nothing
            results.append((result.created, len(announced)))
    assert results == [(4, 0), (0, 0), (0, 0)]  # within the first second: not yet
    assert len(announced) == 1  # at the end, once

    for name in names[:2]:
        aws.complete(name, answer={"label": "cat"})
    page = listed()
    monkeypatch.setattr(sync_writer, "ANNOUNCE_EVERY", 0.0)
    with django_capture_on_commit_callbacks() as announced:
        assert [result.updated for result in write_pages(flow_definition, iter([page] * 2))] == [2, 0]
    assert len(announced) == 1  # the page that changed two loops; not the one that changed none
    with django_capture_on_commit_callbacks() as announced:
        list(write_pages(flow_definition, iter([page])))
    assert announced == []


def test_a_sync_run_announces_its_pages_described_failures_and_statistics_once(
    aws, flow_definition, page_cache_on, django_capture_on_commit_callbacks
):
    # Each announcement drops every user's cached pages: one per run, not one per writer.
    names = start_loops(aws, flow_definition, 3)
    sync_flow_definition(flow_definition.pk, full=False)
    aws.complete(names[0], answer={"label": "cat"})
    aws.fail(names[1])  # the sync describes it (failure reason)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = sync_flow_definition(flow_definition.pk, full=False)
    assert run.updated == 2
    failed = HumanLoop.objects.get(flow_definition=flow_definition, name=names[1])
    assert failed.failure_reason == "Failed by the test"  # described in this run
    flow_definition.refresh_from_db()
    assert flow_definition.stats["status_counts"] == {"Completed": 1, "Failed": 1, "InProgress": 1}  # refreshed
    assert [c for c in callbacks if c is page_cache._bump] == [page_cache._bump]
    # Outside a run, each writer still announces its own change.
    with django_capture_on_commit_callbacks() as callbacks:
        refresh_flow_definition_stats(flow_definition)
    assert callbacks == [page_cache._bump]


def test_an_event_announces_its_change_and_a_duplicate_does_not(world, page_cache_on, commits):
    event = parse_event(for_loop(world.inv_new, "Completed", time=timezone.now()))
    assert bumped(commits, lambda: apply_events([event], transport="https"))
    assert not bumped(commits, lambda: apply_events([event], transport="https"))


def test_discovery_and_answers_ingestion_announce_their_change(aws, db, page_cache_on, commits):
    loop = completed_loop_via_a2i(aws)
    assert bumped(commits, lambda: discover_flow_definitions([aws.region]))
    now = timezone.now() + timedelta(seconds=1)
    assert due_loops(now=now).filter(pk=loop.pk).exists()
    assert bumped(commits, lambda: ingest_loops(claim_batch(10, now=now)))
    assert list(loop.answers.values_list("worker_id", flat=True)) == ["worker-7"]
