"""Full and incremental sync against A2I Local over HTTP, into PostgreSQL."""

import random

import pytest

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, SyncRun
from loops.services.discovery import discover_flow_definitions
from loops.services.loop_state import timeline
from loops.services.sync import sync_flow_definition
from tests.conftest import requires_postgresql, start_loops

from .conftest import CallCounter, list_a2i

pytestmark = pytest.mark.django_db


def assert_db_equals_listing(aws, fd, *, deleted_marked: bool):
    """Every loop A2I lists is stored with equal fields; with deleted_marked, nothing else is live."""
    listing = list_a2i(aws, fd.arn)
    stored = {loop.name: loop for loop in HumanLoop.objects.filter(flow_definition=fd)}
    for name, summary in listing.items():
        loop = stored[name]
        assert (loop.status, loop.creation_time, loop.failure_reason, loop.flow_definition.arn) == (
            summary["HumanLoopStatus"],
            summary["CreationTime"],
            summary.get("FailureReason") or "",
            summary["FlowDefinitionArn"],
        ), name
        assert not loop.deleted_upstream, name
        assert loop.arn == f"arn:aws:sagemaker:{aws.region}:{aws.account_id}:human-loop/{name}"
    live = {name for name, loop in stored.items() if not loop.deleted_upstream}
    if deleted_marked:
        assert live == set(listing)
    else:
        assert live >= set(listing)
    return listing, stored


def make_random_changes(aws, fd, names: list[str], rng: random.Random) -> dict[str, set[str]]:
    """Complete, fail, stop and delete random loops through A2I Local; start new ones."""
    client = aws.client("sagemaker-a2i-runtime")
    shuffled = names[:]
    rng.shuffle(shuffled)
    done = {"completed": set(shuffled[0:10]), "failed": set(shuffled[10:18]), "stopped": set(shuffled[18:25])}
    for name in done["completed"]:
        aws.complete(name, answer={"label": "cat"})
    for name in done["failed"]:
        aws.fail(name, "ValidationError", f"bad input <b>{name}</b>")
    for name in done["stopped"]:
        client.stop_human_loop(HumanLoopName=name)
    # Delete some terminal loops (A2I deletes only Completed, Failed or Stopped loops).
    terminal = sorted(done["completed"] | done["failed"])
    done["deleted"] = set(rng.sample(terminal, 6))
    for name in done["deleted"]:
        client.delete_human_loop(HumanLoopName=name)
    done["new"] = set(start_loops(aws, fd, 15, prefix="late"))
    return done


@pytest.fixture(params=["postgresql-arrays", "orm"])
def write_path(request, monkeypatch):
    """Both page writers: PostgreSQL's one-statement path and the ORM path that SQLite
    (`make run`) uses. The test database is PostgreSQL, so the ORM path is selected by
    patching the vendor check (nothing else is patched: the same rows are written)."""
    if request.param == "orm":
        from loops.services import sync_sql

        monkeypatch.setattr(sync_sql, "_postgres", lambda: False)
    return request.param


def test_incremental_sync_makes_the_database_equal_a2i_after_random_changes(aws, flow_definition, write_path):
    fd = flow_definition
    names = start_loops(aws, fd, 60)
    first = sync_flow_definition(fd.pk, full=False)
    assert (first.outcome, first.created, first.loops_seen) == ("succeeded", 60, 60)
    assert_db_equals_listing(aws, fd, deleted_marked=True)

    done = make_random_changes(aws, fd, names, random.Random(3))
    run = sync_flow_definition(fd.pk, full=False)

    assert run.outcome == SyncRun.Outcome.SUCCEEDED, run.error
    listing, stored = assert_db_equals_listing(aws, fd, deleted_marked=False)
    assert run.created == 15
    # The deleted loops lie in the range this incremental sync listed to its end, so they
    # are marked too (older history is left to the full sync).
    assert run.marked_deleted == len(done["deleted"])
    assert set(HumanLoop.objects.filter(deleted_upstream=True).values_list("name", flat=True)) == done["deleted"]
    # Changed rows only: 25 status changes; deleted loops are not rewritten by the listing.
    assert run.updated == 25 - len(done["deleted"])
    for name in done["failed"] - done["deleted"]:
        assert stored[name].failure_reason == f"bad input <b>{name}</b>"
        # ListHumanLoops omits FailureCode: the sync describes failed loops to get it.
        assert stored[name].failure_code == "ValidationError"
    # A stop then a reached Stopped state shows in the history as transitions observed.
    some_stopped = sorted(done["stopped"])[0]
    history = list(HumanLoopStatusChange.objects.filter(loop__name=some_stopped).values_list("from_status", "to_status"))
    assert history[0][0] == "InProgress"  # the first sight wrote no row: the first row is a transition
    assert history[-1][1] in ("Stopping", "Stopped")
    first_sight = timeline(HumanLoop.objects.get(name=some_stopped))[0]
    assert (first_sight.pk, first_sight.from_status, first_sight.to_status) == (None, "", "InProgress")


def test_full_sync_marks_deleted_loops_and_keeps_them(aws, flow_definition, write_path):
    fd = flow_definition
    names = start_loops(aws, fd, 30)
    sync_flow_definition(fd.pk, full=True)
    client = aws.client("sagemaker-a2i-runtime")
    gone = names[:5]
    for name in gone:
        aws.complete(name, answer={"label": "dog"})
        client.delete_human_loop(HumanLoopName=name)

    run = sync_flow_definition(fd.pk, full=True)

    assert (run.outcome, run.marked_deleted, run.loops_seen) == ("succeeded", 5, 25)
    assert_db_equals_listing(aws, fd, deleted_marked=True)
    kept = HumanLoop.objects.filter(name__in=gone)
    assert kept.count() == 5 and all(loop.deleted_upstream and loop.deleted_upstream_at for loop in kept)
    fd.refresh_from_db()
    assert fd.last_full_sync_succeeded_at and fd.last_sync_error == "" and fd.sync_claimed_until is None
    # A second full sync with nothing changed writes nothing.
    again = sync_flow_definition(fd.pk, full=True)
    assert (again.created, again.updated, again.marked_deleted) == (0, 0, 0)


def test_each_inserted_loop_gets_the_output_uri_a2i_describes(aws, flow_definition, write_path):
    # On PostgreSQL the INSERT builds the URI in SQL (to_char), on the ORM path Python
    # does: both must give A2I's own <path>/<flow definition>/YYYY/MM/DD/hh/mm/ss/<name>.
    fd = flow_definition
    names = start_loops(aws, fd, 12)
    aws.complete(names[0], answer={"label": "x"})
    sync_flow_definition(fd.pk, full=True)
    client = aws.client("sagemaker-a2i-runtime")
    stored = dict(HumanLoop.objects.filter(flow_definition=fd).values_list("name", "output_s3_uri"))
    described = {
        name: client.describe_human_loop(HumanLoopName=name)["HumanLoopOutput"]["OutputS3Uri"] for name in names
    }
    assert stored == described


def test_a_new_loop_gets_no_history_row_and_each_transition_one_row(aws, flow_definition):
    fd = flow_definition
    [name] = start_loops(aws, fd, 1)
    sync_flow_definition(fd.pk, full=False)
    assert not HumanLoopStatusChange.objects.filter(loop__name=name).exists()
    aws.complete(name, answer={"label": "x"})
    sync_flow_definition(fd.pk, full=False)
    sync_flow_definition(fd.pk, full=False)
    rows = list(HumanLoopStatusChange.objects.filter(loop__name=name).values_list("from_status", "to_status"))
    assert rows == [("InProgress", "Completed")]
    loop = HumanLoop.objects.get(name=name)
    # The page's timeline rebuilds the first sight from the loop's row.
    shown = [(c.from_status, c.to_status, c.observed_at) for c in timeline(loop)]
    assert shown == [("", "InProgress", loop.first_seen_at), ("InProgress", "Completed", loop.status_changed_at)]
    assert loop.output_s3_uri.endswith(f"/{fd.name}/{loop.creation_time:%Y/%m/%d/%H/%M/%S}/{name}/output.json")


def test_incremental_sync_lists_only_from_the_oldest_active_loop(aws, flow_definition, settings):
    """History (terminal loops older than every active one) is not listed again."""
    settings.A2I_INCREMENTAL_MARGIN = 60
    fd = flow_definition
    store = aws.store
    old = [store.start_human_loop(f"old-{i}", fd.arn, "{}")["HumanLoopName"] for i in range(450)]
    for name in old:
        store.fail_loop(name, "Expired", "expired")
    store.advance_clock(3600)
    recent = [store.start_human_loop(f"recent-{i}", fd.arn, "{}")["HumanLoopName"] for i in range(120)]
    sync_flow_definition(fd.pk, full=True)

    for name in recent[:7]:
        store.fail_loop(name, "InternalError", "boom")
    store.start_human_loop("newest", fd.arn, "{}")

    counter = CallCounter(a2i_api.listing_client(aws.region))
    run = sync_flow_definition(fd.pk, full=False)

    assert run.outcome == "succeeded", run.error
    assert counter["ListHumanLoops"] == 2  # 121 loops since the oldest active one: 2 pages of 100
    assert (run.loops_seen, run.created, run.marked_deleted) == (121, 1, 0)
    assert run.listed_from is not None
    assert HumanLoop.objects.filter(status="Failed", failure_code="InternalError").count() == 7


def test_a_name_reused_after_a_delete_revives_the_row_as_a_new_loop(aws, flow_definition):
    fd = flow_definition
    [name] = start_loops(aws, fd, 1)
    aws.complete(name, answer={"label": "x"})
    sync_flow_definition(fd.pk, full=True)
    aws.client("sagemaker-a2i-runtime").delete_human_loop(HumanLoopName=name)
    sync_flow_definition(fd.pk, full=True)
    assert HumanLoop.objects.get(name=name).deleted_upstream

    aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName=name, FlowDefinitionArn=fd.arn, HumanLoopInput={"InputContent": "{}"}
    )
    run = sync_flow_definition(fd.pk, full=False)

    loop = HumanLoop.objects.get(name=name)
    assert (run.updated, loop.status, loop.deleted_upstream) == (1, "InProgress", False)
    assert loop.creation_time == list_a2i(aws, fd.arn)[name]["CreationTime"]
    # The new loop's first sight is a row (the row already existed); the first one's was
    # not written (a sync's first sight of a loop writes none), and it had no transition.
    history = list(loop.status_changes.values_list("from_status", "to_status"))
    assert history == [("", "InProgress")]


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_full_sync_on_parallel_writer_connections_equals_a2i(aws, settings):
    """Outside a test transaction, pages are written on A2I_SYNC_WRITERS connections of their own."""
    settings.A2I_SYNC_WRITERS = 3
    arn = aws.create_flow_definition("parallel")
    store = aws.store
    for i in range(1234):
        store.start_human_loop(f"parallel-{i}", arn, "{}")
        if i % 4 == 0:
            store.fail_loop(f"parallel-{i}", "Expired", "expired")
    discover_flow_definitions([aws.region])
    fd = FlowDefinition.objects.get(arn=arn)

    run = sync_flow_definition(fd.pk, full=True)

    assert (run.outcome, run.loops_seen, run.created) == ("succeeded", 1234, 1234)
    assert run.pages >= 13  # 13 with one paginator; a slice's last page is not full
    assert_db_equals_listing(aws, fd, deleted_marked=True)
    # A first sync writes no history rows: each loop's first sight is its row's first_seen_at.
    assert not HumanLoopStatusChange.objects.filter(loop__flow_definition=fd).exists()
    # A second run over unchanged loops writes nothing and marks nothing deleted.
    again = sync_flow_definition(fd.pk, full=True)
    assert (again.created, again.updated, again.marked_deleted) == (0, 0, 0)


@requires_postgresql
def test_a_sync_that_inserts_many_loops_refreshes_the_planner_statistics(aws, flow_definition, monkeypatch):
    """Otherwise, until autovacuum comes round, the planner plans a first sync's million
    loops as the empty table it saw: the loop list's deep pages by sequential scan."""
    from django.db import connection

    from loops.services import sync

    def planner_rows() -> float:
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [HumanLoop._meta.db_table])
            return cursor.fetchone()[0]

    monkeypatch.setattr(sync, "ANALYZE_AFTER_CREATED", 25)  # the real threshold, 10,000, scaled down
    start_loops(aws, flow_definition, 20)
    sync_flow_definition(flow_definition.pk, full=True)
    before = planner_rows()
    assert before != HumanLoop.objects.count() == 20  # 20 created: below the threshold, no ANALYZE

    start_loops(aws, flow_definition, 30, prefix="more")
    run = sync_flow_definition(flow_definition.pk, full=True)
    assert run.created == 30
    assert planner_rows() == HumanLoop.objects.count() == 50
    # ... with statistics for the columns the dashboard filters and sorts on, quick ones:
    # 50 distinct creation times in a histogram of at most target + 1 bounds (PostgreSQL's
    # default target, 100, would keep all 50).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, cardinality(histogram_bounds::text::text[]) FROM pg_stats WHERE tablename = %s",
            [HumanLoop._meta.db_table],
        )
        analyzed = dict(cursor.fetchall())
    assert {"status", "creation_time", "flow_definition_id", "first_seen_at"} <= set(analyzed)
    assert analyzed["creation_time"] <= sync.ANALYZE_STATISTICS_TARGET + 1
    with connection.cursor() as cursor:  # the session's own target is back to the default
        cursor.execute("SHOW default_statistics_target")
        assert cursor.fetchone()[0] == "100"


@requires_postgresql
def test_the_loop_identifiers_compare_in_byte_order_on_postgresql(db):
    """Migration 0012: cheaper comparisons in the indexes every synced loop enters."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name, collation_name FROM information_schema.columns WHERE table_name = %s "
            "AND column_name IN ('arn', 'name', 'status', 'answers_state', 'failure_reason')",
            [HumanLoop._meta.db_table],
        )
        collations = dict(cursor.fetchall())
    assert collations == {"arn": "C", "name": "C", "status": "C", "answers_state": "C", "failure_reason": None}
