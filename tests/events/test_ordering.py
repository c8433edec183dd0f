"""Duplicates, late and out-of-order events, unknown loops and flow definitions, and events
meeting syncs and actions: each through the real endpoint."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, ReceivedEvent
from loops.services.discovery import discover_flow_definitions
from loops.services.loop_state import set_loop_status, timeline
from loops.services.stats import first_sight_of_recent_loops
from loops.services.sync_writer import write_page
from tests.conftest import ACCOUNT, requires_postgresql, start_loops, sync

from .conftest import for_loop, make_event


def history(loop) -> list[tuple]:
    return list(loop.status_changes.order_by("id").values_list("from_status", "to_status", "source"))


def shown(loop) -> list[tuple]:
    """The history as the loop's page shows it: a sync's first sight writes no row and is rebuilt."""
    return [(change.from_status, change.to_status, change.source) for change in timeline(loop)]


def test_a_redelivered_event_changes_nothing_and_writes_no_second_history_row(endpoint, world):
    event = for_loop(world.inv_new, time=world.now - timedelta(minutes=1))
    assert endpoint.post(event).json() == {"received": 1, "applied": 1}
    loop = HumanLoop.objects.get(pk=world.inv_new.pk)

    for _ in range(2):
        assert endpoint.post(event).json() == {"received": 1, "duplicate": 1}

    again = HumanLoop.objects.get(pk=loop.pk)
    assert (again.status, again.status_changed_at, again.last_seen_at) == (loop.status, loop.status_changed_at, loop.last_seen_at)
    assert history(again) == [("InProgress", "Completed", "event")]
    # Every delivery is counted: the first applied, the others duplicates.
    assert sorted(ReceivedEvent.objects.filter(event_id=event["id"]).values_list("result", flat=True)) == [
        "applied", "duplicate", "duplicate"
    ]


def test_a_second_event_for_the_same_change_is_a_duplicate(endpoint, world):
    # AWS: SageMaker "may send multiple events per state change", with different ids.
    first = for_loop(world.inv_new, time=world.now - timedelta(seconds=30))
    second = for_loop(world.inv_new, time=world.now - timedelta(seconds=29))
    assert endpoint.post(first).json()["applied"] == 1
    assert endpoint.post(second).json() == {"received": 1, "duplicate": 1}
    loop = HumanLoop.objects.get(pk=world.inv_new.pk)
    assert history(loop) == [("InProgress", "Completed", "event")]
    assert loop.status_changed_at == (world.now - timedelta(seconds=30)).replace(microsecond=0)


@requires_postgresql
def test_events_of_one_new_loop_posted_concurrently_create_it_once(endpoint, world):
    created = world.now - timedelta(minutes=3)
    first = make_event("brand-new", time=world.now, created=created)
    second = {**first, "id": "another-id-for-the-same-change"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: endpoint.post(first if i % 2 else second), range(8)))
    assert [r.status_code for r in responses] == [202] * 8
    assert sum(r.json().get("applied", 0) for r in responses) == 1
    loop = HumanLoop.objects.get(name="brand-new")
    assert history(loop) == [("", "Completed", "event")]


@requires_postgresql
def test_the_same_event_posted_concurrently_is_applied_once(endpoint, world):
    event = for_loop(world.inv_new, "Failed", time=world.now, failure_code="InternalError", failure_reason="x")
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: endpoint.post(event), range(8)))
    assert [r.status_code for r in responses] == [202] * 8
    results = sorted(r.json().get("applied", 0) for r in responses)
    assert results == [0] * 7 + [1]
    assert history(HumanLoop.objects.get(pk=world.inv_new.pk)) == [("InProgress", "Failed", "event")]
    assert ReceivedEvent.objects.filter(event_id=event["id"], result="applied").count() == 1


def test_an_older_event_never_replaces_a_terminal_status(endpoint, world):
    loop = world.inv_new
    assert endpoint.post(for_loop(loop, "Completed", time=world.now - timedelta(minutes=1))).json()["applied"] == 1
    late = for_loop(loop, "Stopped", time=world.now - timedelta(minutes=5))
    assert endpoint.post(late).json() == {"received": 1, "stale": 1}
    stored = HumanLoop.objects.get(pk=loop.pk)
    assert stored.status == "Completed"
    assert stored.status_changed_at == (world.now - timedelta(minutes=1)).replace(microsecond=0)
    assert history(stored) == [("InProgress", "Completed", "event")]


def test_a_late_event_of_an_earlier_loop_of_the_same_name_is_stale(endpoint, world):
    # inv-done's name was reused: an event of the loop deleted before it arrives late.
    loop = world.inv_done
    old = make_event(loop.name, "Failed", time=world.now, created=loop.creation_time - timedelta(days=3),
                     failure_code="Expired", failure_reason="expired")
    assert endpoint.post(old).json() == {"received": 1, "stale": 1}
    stored = HumanLoop.objects.get(pk=loop.pk)
    assert (stored.status, stored.failure_code, stored.creation_time) == ("Completed", "", loop.creation_time)


def test_an_event_of_a_loop_that_reuses_a_deleted_name_replaces_the_row(endpoint, world):
    gone = world.rec_gone  # Completed, deleted upstream
    created = world.now - timedelta(minutes=10)
    event = make_event(gone.name, "Stopped", time=world.now, created=created, fd_arn=world.fd_rec.arn)
    assert endpoint.post(event).json()["applied"] == 1
    stored = HumanLoop.objects.get(pk=gone.pk)
    assert (stored.status, stored.deleted_upstream, stored.deleted_upstream_at) == ("Stopped", False, None)
    assert stored.creation_time == created.replace(microsecond=created.microsecond // 1000 * 1000)
    assert history(stored)[-1] == ("", "Stopped", "event")


def test_an_event_after_the_sync_noticed_the_change_gives_that_row_a2is_time(endpoint, world):
    loop = world.inv_done  # InProgress -> Completed observed by a sync 2 h ago
    completed = world.now - timedelta(hours=2, minutes=1, seconds=12)
    assert endpoint.post(for_loop(loop, time=completed)).json() == {"received": 1, "applied": 1}
    stored = HumanLoop.objects.get(pk=loop.pk)
    rows = list(stored.status_changes.order_by("id").values_list("to_status", "observed_at", "source"))
    # Still one row per change; the completion's time is now A2I's.
    assert rows[0][2] == "sync"
    assert rows[1] == ("Completed", completed.replace(microsecond=0), "event")
    assert stored.status_changed_at == completed.replace(microsecond=0)


def test_an_event_fills_in_the_failure_code_listhumanloops_does_not_give(endpoint, aws, flow_definition):
    (name,) = start_loops(aws, flow_definition, 1, prefix="coded")
    sync(flow_definition)
    aws.fail(name, "ValidationError", "The input was invalid.")
    # The incremental sync's own describe pass is what fills codes in without events; a
    # listing page alone (what this writes) has no FailureCode.
    summary = aws.client("sagemaker-a2i-runtime").list_human_loops(FlowDefinitionArn=flow_definition.arn)["HumanLoopSummaries"]
    write_page(flow_definition, summary)
    loop = HumanLoop.objects.get(name=name)
    assert (loop.status, loop.failure_code) == ("Failed", "")
    described = aws.client("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName=name)
    event = for_loop(loop, "Failed", time=loop.status_changed_at - timedelta(seconds=1),
                     failure_code=described["FailureCode"], failure_reason=described["FailureReason"])
    assert endpoint.post(event).json()["applied"] == 1
    loop.refresh_from_db()
    assert (loop.failure_code, loop.failure_reason) == ("ValidationError", "The input was invalid.")
    assert history(loop) == [("InProgress", "Failed", "event")]
    assert shown(loop) == [("", "InProgress", "sync"), ("InProgress", "Failed", "event")]


def test_an_event_dates_the_status_a_sync_first_saw_a_loop_in(endpoint, aws, flow_definition):
    (name,) = start_loops(aws, flow_definition, 1, prefix="seen-done")
    aws.complete(name, answer={"label": "ok"})
    sync(flow_definition)  # first seen already Completed: no history row, the time is when we looked
    loop = HumanLoop.objects.get(name=name)
    assert (loop.status, history(loop)) == ("Completed", [])
    since = loop.creation_time - timedelta(seconds=1)
    assert list(first_sight_of_recent_loops([flow_definition.pk], ["Completed"], since=since)) == [loop]

    a2i_time = loop.first_seen_at.replace(microsecond=0) - timedelta(seconds=5)
    assert endpoint.post(for_loop(loop, "Completed", time=a2i_time)).json()["applied"] == 1

    loop.refresh_from_db()
    assert history(loop) == [("", "Completed", "event")]
    assert loop.status_changed_at == a2i_time
    # Now a completion at A2I's time (index change_transition_observed), no longer a sync's
    # first sight: counted once.
    assert not first_sight_of_recent_loops([flow_definition.pk], ["Completed"], since=since).exists()


def test_a_sync_after_the_event_writes_no_row_and_a_stale_listing_never_moves_the_loop_back(endpoint, aws, flow_definition):
    (name,) = start_loops(aws, flow_definition, 1, prefix="raced")
    sync(flow_definition)
    runtime = aws.client("sagemaker-a2i-runtime")
    stale_page = runtime.list_human_loops(FlowDefinitionArn=flow_definition.arn)["HumanLoopSummaries"]  # InProgress
    aws.complete(name, answer={"label": "ok"})
    loop = HumanLoop.objects.get(name=name)
    assert endpoint.post(for_loop(loop, time=aws.store.now())).json()["applied"] == 1

    write_page(flow_definition, stale_page)  # a page listed before the completion, written after the event
    sync(flow_definition)  # and the next sync agrees with the event
    loop.refresh_from_db()
    assert loop.status == "Completed"
    assert history(loop) == [("InProgress", "Completed", "event")]
    assert shown(loop) == [("", "InProgress", "sync"), ("InProgress", "Completed", "event")]


def test_an_action_never_moves_a_loop_an_event_ended_back_to_stopping(endpoint, world):
    loop = world.inv_new
    assert endpoint.post(for_loop(loop, "Stopped", time=world.now)).json()["applied"] == 1
    stored = HumanLoop.objects.get(pk=loop.pk)
    # StopHumanLoop succeeded in A2I, and the Stopped event arrived before the action wrote Stopping.
    assert set_loop_status(stored, "Stopping", source=HumanLoopStatusChange.Source.ACTION) is False
    assert HumanLoop.objects.get(pk=loop.pk).status == "Stopped"
    assert history(stored) == [("InProgress", "Stopped", "event")]


def test_an_unknown_flow_definition_is_recorded_and_discovery_completes_it(endpoint, aws, db):
    arn = aws.create_flow_definition("from-an-event")
    runtime = aws.client("sagemaker-a2i-runtime")
    runtime.start_human_loop(HumanLoopName="first-loop", FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})
    aws.complete("first-loop", answer={"label": "x"})
    described = runtime.describe_human_loop(HumanLoopName="first-loop")
    event = make_event("first-loop", time=aws.store.now(), created=described["CreationTime"], fd_arn=arn,
                       output_uri=described["HumanLoopOutput"]["OutputS3Uri"])

    assert endpoint.post(event).json() == {"received": 1, "applied": 1}

    fd = FlowDefinition.objects.get(arn=arn)
    assert (fd.name, fd.region, fd.status, fd.last_discovered_at) == ("from-an-event", aws.region, "Active", None)
    loop = HumanLoop.objects.get(name="first-loop")
    assert loop.flow_definition == fd and loop.status == "Completed"
    # The endpoint queued discovery (tests/events/test_worker.py runs it in a real worker);
    # what it does for such a flow definition:
    discover_flow_definitions([aws.region])
    fd.refresh_from_db()
    assert fd.task_title == "Review from-an-event" and fd.last_discovered_at is not None
    assert fd.output_s3_path == "s3://a2i-local-output/out"


def test_an_event_of_another_region_and_account_is_recorded_there(endpoint, db):
    fd_arn = "arn:aws:sagemaker:eu-west-1:210987654321:flow-definition/eu-flow"
    now = timezone.now()
    event = make_event("eu-loop", "Stopped", time=now, created=now - timedelta(hours=1), fd_arn=fd_arn)
    assert endpoint.post(event).json()["applied"] == 1
    loop = HumanLoop.objects.select_related("flow_definition").get(name="eu-loop")
    assert loop.arn == "arn:aws:sagemaker:eu-west-1:210987654321:human-loop/eu-loop"
    assert (loop.flow_definition.region, loop.flow_definition.name) == ("eu-west-1", "eu-flow")
    assert ACCOUNT not in loop.arn
