"""Each rule kind fires on known data and resolves when the data changes; scopes; what a state records."""

from datetime import timedelta

import pytest
from django.utils import timezone

from loops.models import AlertState, HumanLoop, HumanLoopStatusChange, WorkerHeartbeat
from loops.services.alerts import evaluate_rules
from loops.services.stats import refresh_flow_definition_stats

from .conftest import add_loops, make_rule

pytestmark = pytest.mark.usefixtures("no_hold")


def state_of(rule, fd=None) -> AlertState | None:
    return AlertState.objects.filter(rule=rule, flow_definition=fd).first()


def firing_scopes(rule) -> set:
    return set(AlertState.objects.filter(rule=rule, status="firing").values_list("flow_definition__name", flat=True))


def test_expiring_fires_for_loops_past_the_share_of_their_lifetime_and_resolves_when_they_end(fleet):
    now = fleet.now
    old = add_loops(fleet.inv, "InProgress", 2, age=timedelta(minutes=55), now=now)  # 92 % of 1 h
    add_loops(fleet.inv, "InProgress", 3, age=timedelta(minutes=10), now=now)
    add_loops(fleet.rec, "InProgress", 1, age=timedelta(minutes=40), now=now)  # 67 %: not yet
    rule = make_rule("expiring")

    evaluate_rules(now=now)

    assert firing_scopes(rule) == {"invoices"}
    state = state_of(rule, fleet.inv)
    assert state.value == 2 and "2 InProgress loop(s) older than 80% of the 1 h" in state.summary
    assert {loop["name"] for loop in state.loops} == {loop.name for loop in old}
    assert state.link.startswith("/loops/?flow_definition=arn%3Aaws") and "status=InProgress" in state.link
    assert "created_before=" in state.link

    HumanLoop.objects.filter(pk__in=[loop.pk for loop in old]).update(status="Completed")
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(rule) == set()
    assert state_of(rule, fleet.inv).status == "ok"


def test_expiring_waits_for_its_minimum_count(fleet):
    add_loops(fleet.inv, "InProgress", 2, age=timedelta(minutes=55), now=fleet.now)
    rule = make_rule("expiring", count=3)
    evaluate_rules(now=fleet.now)
    assert firing_scopes(rule) == set()
    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=50), now=fleet.now, prefix="third")
    evaluate_rules(now=fleet.now + timedelta(minutes=1))
    assert firing_scopes(rule) == {"invoices"}


def test_stuck_stopping_fires_after_m_minutes_in_stopping_and_resolves_when_stopped(fleet):
    now = fleet.now
    stuck = add_loops(fleet.rec, "Stopping", 1, age=timedelta(hours=1), now=now)[0]
    HumanLoop.objects.filter(pk=stuck.pk).update(status_changed_at=now - timedelta(minutes=20))
    fresh = add_loops(fleet.inv, "Stopping", 1, age=timedelta(hours=1), now=now)[0]
    HumanLoop.objects.filter(pk=fresh.pk).update(status_changed_at=now - timedelta(minutes=5))
    rule = make_rule("stuck_stopping")  # default 15 min

    evaluate_rules(now=now)
    assert firing_scopes(rule) == {"receipts"}
    assert state_of(rule, fleet.rec).loops[0]["name"] == stuck.name

    HumanLoop.objects.filter(pk=stuck.pk).update(status="Stopped")
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(rule) == set()


def end_loops(fd, status, count, *, now, failure_code="", prefix="ended"):
    """Loops seen InProgress, then observed ending in the last few minutes."""
    loops = add_loops(fd, status, count, age=timedelta(minutes=30), now=now, prefix=prefix, failure_code=failure_code)
    HumanLoopStatusChange.objects.bulk_create(
        HumanLoopStatusChange(loop=loop, from_status="InProgress", to_status=status, observed_at=now - timedelta(minutes=5))
        for loop in loops
    )
    return loops


def test_failure_rate_fires_above_the_threshold_with_enough_volume_and_resolves_when_the_share_drops(fleet):
    now = fleet.now
    end_loops(fleet.inv, "Completed", 15, now=now)
    failed = end_loops(fleet.inv, "Failed", 5, now=now, failure_code="Expired")  # 25 % of 20
    end_loops(fleet.rec, "Failed", 3, now=now)  # 100 %, but 3 loops cannot page anyone
    rule = make_rule("failure_rate")  # 10 %, from 20 ended loops, 1 h

    evaluate_rules(now=now)
    assert firing_scopes(rule) == {"invoices"}
    state = state_of(rule, fleet.inv)
    assert state.value == pytest.approx(0.25)
    assert "5 of 20 loops that ended in the last 60 min failed (25%" in state.summary
    assert {loop["name"] for loop in state.loops} == {loop.name for loop in failed}
    assert "status=Failed" in state.link and "window=1h" in state.link

    end_loops(fleet.inv, "Completed", 30, now=now, prefix="more")  # 5 of 50: 10 %, not above
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(rule) == set()


def test_failure_rate_can_count_one_failure_code_only(fleet):
    now = fleet.now
    end_loops(fleet.inv, "Completed", 17, now=now)
    end_loops(fleet.inv, "Failed", 3, now=now, failure_code="ValidationError")
    end_loops(fleet.inv, "Failed", 1, now=now, failure_code="Expired", prefix="expired")
    only_expired = make_rule("failure_rate", failure_code="Expired", share=0.1)
    any_code = make_rule("failure_rate", share=0.1)
    any_code.name = "any code"
    any_code.save()
    evaluate_rules(now=now)
    assert firing_scopes(only_expired) == set()  # 1 of 21
    assert firing_scopes(any_code) == {"invoices"}  # 4 of 21


def test_failure_rate_ignores_the_history_a_first_sync_brings_in(fleet):
    # First sight of loops that ended long ago (from_status "") is not a failure in the window.
    now = fleet.now
    loops = add_loops(fleet.inv, "Failed", 30, age=timedelta(days=3), now=now, prefix="history")
    HumanLoopStatusChange.objects.bulk_create(
        HumanLoopStatusChange(loop=loop, from_status="", to_status="Failed", observed_at=now - timedelta(minutes=2)) for loop in loops
    )
    rule = make_rule("failure_rate")
    evaluate_rules(now=now)
    assert firing_scopes(rule) == set()


def test_backlog_fires_above_n_in_progress_from_the_statistics_and_resolves(fleet):
    now = fleet.now
    busy = add_loops(fleet.inv, "InProgress", 4, age=timedelta(minutes=5), now=now)
    refresh_flow_definition_stats(fleet.inv)
    refresh_flow_definition_stats(fleet.rec)
    rule = make_rule("backlog", count=3)

    evaluate_rules(now=now)
    assert firing_scopes(rule) == {"invoices"}
    assert state_of(rule, fleet.inv).value == 4

    HumanLoop.objects.filter(pk=busy[0].pk).update(status="Completed")
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(rule) == {"invoices"}  # the statistics still say 4 until their refresh
    refresh_flow_definition_stats(fleet.inv)
    evaluate_rules(now=now + timedelta(minutes=2))
    assert firing_scopes(rule) == set()


def complete_after(fd, count, review, *, now, prefix):
    loops = add_loops(fd, "Completed", count, age=review + timedelta(minutes=10), now=now, prefix=prefix)
    HumanLoopStatusChange.objects.bulk_create(
        HumanLoopStatusChange(loop=loop, from_status="InProgress", to_status="Completed", observed_at=loop.creation_time + review)
        for loop in loops
    )
    return loops


def test_review_time_fires_when_p90_is_above_n_minutes_and_resolves_when_reviews_speed_up(fleet):
    now = fleet.now
    slow = complete_after(fleet.inv, 10, timedelta(hours=2), now=now, prefix="slow")
    complete_after(fleet.rec, 10, timedelta(minutes=3), now=now, prefix="fast")
    for fd in (fleet.inv, fleet.rec):
        refresh_flow_definition_stats(fd)
    rule = make_rule("review_time", minutes=60)

    evaluate_rules(now=now)
    assert firing_scopes(rule) == {"invoices"}
    assert state_of(rule, fleet.inv).value == pytest.approx(7200, rel=0.01)

    HumanLoopStatusChange.objects.filter(loop__in=slow).delete()
    complete_after(fleet.inv, 10, timedelta(minutes=4), now=now, prefix="quicker")
    refresh_flow_definition_stats(fleet.inv)
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(rule) == set()


def test_review_time_reads_exact_times_over_its_own_window(fleet):
    now = fleet.now
    # Exact review times (the reviewers' answers were read): slow loops two days ago,
    # quick ones in the last hours.
    for loop in add_loops(fleet.inv, "Completed", 10, age=timedelta(days=2), now=now, prefix="old-slow"):
        HumanLoop.objects.filter(pk=loop.pk).update(review_seconds=3 * 3600)
    for loop in add_loops(fleet.inv, "Completed", 10, age=timedelta(hours=3), now=now, prefix="new-quick"):
        HumanLoop.objects.filter(pk=loop.pk).update(review_seconds=5 * 60)
    week = make_rule("review_time", minutes=60, window_minutes=7 * 1440)
    day = make_rule("review_time", minutes=60, window_minutes=1440)

    evaluate_rules(now=now)
    assert firing_scopes(week) == {"invoices"}  # the slow loops are in its window
    assert state_of(week, fleet.inv).value == pytest.approx(3 * 3600)
    assert "exact" in state_of(week, fleet.inv).summary
    assert firing_scopes(day) == set()  # the last day's loops were quick
    # And it fires once the last day's reviews are slow too.
    for loop in add_loops(fleet.inv, "Completed", 30, age=timedelta(hours=2), now=now, prefix="new-slow"):
        HumanLoop.objects.filter(pk=loop.pk).update(review_seconds=2 * 3600)
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(day) == {"invoices"}
    assert state_of(day, fleet.inv).value == pytest.approx(2 * 3600)


def test_sync_stale_fires_per_flow_definition_and_for_the_worker_and_resolves(fleet):
    now = fleet.now
    fleet.rec.last_sync_succeeded_at = now - timedelta(minutes=25)
    fleet.rec.save()
    rule = make_rule("sync_stale")  # 10 min

    evaluate_rules(now=now)
    assert firing_scopes(rule) == {"receipts"}
    assert "Last successful sync 25 min ago" in state_of(rule, fleet.rec).summary

    WorkerHeartbeat.objects.update(last_beat_at=now - timedelta(minutes=5))
    type(fleet.rec).objects.filter(pk=fleet.rec.pk).update(last_sync_succeeded_at=now)
    evaluate_rules(now=now + timedelta(minutes=1))
    assert firing_scopes(rule) == {None}  # the worker (global scope) only
    assert "heartbeat" in state_of(rule).summary

    WorkerHeartbeat.objects.update(last_beat_at=now + timedelta(minutes=2))
    evaluate_rules(now=now + timedelta(minutes=2))
    assert firing_scopes(rule) == set()


def test_a_rule_scoped_to_one_flow_definition_evaluates_only_that_one(fleet):
    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)
    add_loops(fleet.rec, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)
    rule = make_rule("expiring", fd=fleet.rec)
    evaluate_rules(now=fleet.now)
    assert set(AlertState.objects.filter(rule=rule).values_list("flow_definition__name", flat=True)) == {"receipts"}


def test_a_disabled_rule_is_not_evaluated(fleet):
    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)
    rule = make_rule("expiring", enabled=False)
    tick = evaluate_rules(now=fleet.now)
    assert tick.evaluated == 0 and not AlertState.objects.filter(rule=rule).exists()


def test_a_rule_that_raises_does_not_stop_the_others(fleet, monkeypatch):
    from loops.services import alerts

    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)
    broken = make_rule("backlog")
    ok = make_rule("expiring")

    def explode(rule, fds, now):
        raise RuntimeError("boom")

    # No real part can make an evaluator raise on demand; the isolation is what is tested.
    monkeypatch.setitem(alerts.EVALUATORS, "backlog", explode)
    tick = evaluate_rules(now=fleet.now)
    assert tick.evaluated == 1 and firing_scopes(ok) == {"invoices"}
    broken.refresh_from_db()
    assert broken.evaluation_claimed_until is None  # released for the next tick
    assert timezone.now() - broken.last_evaluated_at < timedelta(minutes=1) or broken.last_evaluated_at == fleet.now


def test_each_scope_lists_its_own_first_loops_at_most_ten(fleet):
    """The loops a notification lists are fetched for every flow definition in one query
    (a window per flow definition): each scope still gets its own, oldest first, ten at most."""
    from loops.services.alerts import SAMPLE

    now = fleet.now
    many = add_loops(fleet.inv, "InProgress", SAMPLE + 3, age=timedelta(minutes=50), now=now, prefix="inv")
    few = add_loops(fleet.rec, "InProgress", 2, age=timedelta(minutes=55), now=now, prefix="rec")
    rule = make_rule("expiring")

    evaluate_rules(now=now)

    assert firing_scopes(rule) == {"invoices", "receipts"}
    listed = [loop["name"] for loop in state_of(rule, fleet.inv).loops]
    oldest_first = sorted(many, key=lambda loop: (loop.creation_time, loop.pk))
    assert listed == [loop.name for loop in oldest_first[:SAMPLE]]
    assert state_of(rule, fleet.inv).value == SAMPLE + 3
    assert {loop["name"] for loop in state_of(rule, fleet.rec).loops} == {loop.name for loop in few}
