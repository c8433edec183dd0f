"""Exactly one notification when a rule starts firing and one when it resolves, also with two
evaluations racing; the hold against flapping; reminders; mute. Deliveries go to a real HTTP receiver."""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from loops.models import AlertDelivery, AlertState, AlertTransition, HumanLoop
from loops.services import notify
from loops.services.alerts import Finding, apply_finding, evaluate_rules, mute_rule
from tests.conftest import requires_postgresql

from .conftest import add_loops, make_rule, webhook_channel


def send_all(tick, now=None) -> None:
    for delivery_id in tick.deliveries:
        notify.deliver(delivery_id, now=now)


def evaluate_and_send(now) -> None:
    """One tick at `now`, its deliveries sent at once (as the workers would)."""
    send_all(evaluate_rules(now=now), now=now)


def states_sent(receiver) -> list[str]:
    return [request["json"]["state"] for request in receiver.requests]


@pytest.fixture
def expiring(fleet, receivers, no_hold):
    """An expiring rule over every flow definition, one webhook channel, one loop about to expire."""
    receiver = receivers()
    rule = make_rule("expiring", channels=[webhook_channel(receiver)])
    loop = add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)[0]
    return rule, receiver, loop, fleet.now


def test_one_notification_when_firing_starts_none_while_it_stays_one_when_it_resolves(expiring):
    rule, receiver, loop, now = expiring
    for minute in range(5):  # five evaluations of one firing episode
        evaluate_and_send(now + timedelta(minutes=minute))
    assert states_sent(receiver) == ["firing"]

    HumanLoop.objects.filter(pk=loop.pk).update(status="Completed")
    for minute in range(5, 10):
        evaluate_and_send(now + timedelta(minutes=minute))
    assert states_sent(receiver) == ["firing", "resolved"]
    assert list(AlertTransition.objects.order_by("created_at").values_list("kind", "episode")) == [("firing", 1), ("resolved", 1)]

    # The next episode is a new pair.
    add_loops(loop.flow_definition, "InProgress", 1, age=timedelta(minutes=58), now=now, prefix="again")
    evaluate_and_send(now + timedelta(minutes=11))
    assert states_sent(receiver) == ["firing", "resolved", "firing"]
    assert receiver.requests[-1]["json"]["episode"] == 2


def test_the_webhook_document_names_rule_scope_state_counts_loops_and_links(expiring, settings):
    rule, receiver, loop, now = expiring
    settings.A2I_SITE_URL = "https://a2i.example.com"
    evaluate_and_send(now)
    document = receiver.requests[0]["json"]
    assert document["rule"] == {"id": rule.pk, "name": "expiring rule", "kind": "expiring",
                                "condition": "at least 1 InProgress loop(s) older than 80% of the task availability lifetime"}
    assert document["scope"]["flow_definition"] == "invoices" and document["scope"]["region"] == "us-east-1"
    assert document["state"] == "firing" and document["value"] == 1
    assert document["loops"] == [{"id": loop.pk, "name": loop.name, "status": "InProgress",
                                  "url": f"https://a2i.example.com/loops/{loop.pk}/"}]
    assert document["links"]["alerts"] == "https://a2i.example.com/alerts/"
    assert document["links"]["details"].startswith("https://a2i.example.com/loops/?flow_definition=")
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"


def test_a_flapping_rule_is_held_firing_instead_of_notifying_every_evaluation(expiring, settings):
    rule, receiver, loop, now = expiring
    settings.A2I_ALERT_HOLD_SECONDS = 300
    evaluate_and_send(now)
    for minute in range(1, 9):  # clear, firing, clear, firing... every minute
        HumanLoop.objects.filter(pk=loop.pk).update(status="Completed" if minute % 2 else "InProgress")
        evaluate_and_send(now + timedelta(minutes=minute))
    assert states_sent(receiver) == ["firing"]
    assert AlertState.objects.get(rule=rule).status == "firing"

    # Clear for longer than the hold: resolved, once.
    HumanLoop.objects.filter(pk=loop.pk).update(status="Completed")
    for minute in range(9, 20):
        evaluate_and_send(now + timedelta(minutes=minute))
    assert states_sent(receiver) == ["firing", "resolved"]
    resolved = AlertTransition.objects.get(kind="resolved")
    assert resolved.created_at == now + timedelta(minutes=14)  # clear since minute 9, hold 5 min


def test_reminders_every_r_hours_while_it_keeps_firing(expiring):
    rule, receiver, loop, now = expiring
    rule.reminder_hours = 2
    rule.save()
    for minutes in range(0, 5 * 60, 30):  # five hours, every half hour
        evaluate_and_send(now + timedelta(minutes=minutes))
    assert states_sent(receiver) == ["firing", "reminder", "reminder"]
    reminders = AlertTransition.objects.filter(kind="reminder").order_by("created_at")
    assert [t.created_at - now for t in reminders] == [timedelta(hours=2), timedelta(hours=4)]


def test_a_muted_rule_records_its_transitions_but_sends_nothing(expiring):
    rule, receiver, loop, now = expiring
    mute_rule(rule, now + timedelta(hours=1))
    evaluate_and_send(now)
    assert receiver.requests == []
    firing = AlertTransition.objects.get()
    assert firing.kind == "firing" and firing.muted and not firing.deliveries.exists()

    # Resolved after the mute ended: nobody was told it started, so nobody is told it ended.
    HumanLoop.objects.filter(pk=loop.pk).update(status="Completed")
    evaluate_and_send(now + timedelta(hours=2))
    assert receiver.requests == []
    assert AlertTransition.objects.get(kind="resolved").muted

    # Unmuted: the next episode is sent.
    mute_rule(rule, None)
    HumanLoop.objects.filter(pk=loop.pk).update(status="InProgress")
    evaluate_and_send(now + timedelta(hours=3))
    assert states_sent(receiver) == ["firing"]


def test_the_second_guard_a_stale_state_cannot_record_a_transition_twice(expiring):
    # Two evaluations that both read the state as "ok" before either wrote: only one wins the
    # conditional UPDATE, whatever the claims said.
    rule, receiver, loop, now = expiring
    state = AlertState.objects.create(rule=rule, flow_definition=loop.flow_definition)
    stale_copy = AlertState.objects.get(pk=state.pk)
    finding = Finding(True, 1, "one loop")
    first = apply_finding(rule, state, finding, now)
    second = apply_finding(rule, stale_copy, finding, now)
    assert first is not None and second is None
    assert AlertTransition.objects.count() == 1 and AlertDelivery.objects.count() == 1


@requires_postgresql
@pytest.mark.django_db(transaction=True)
def test_two_evaluations_racing_send_one_firing_and_one_resolved_notification(fleet, receivers, settings):
    settings.A2I_ALERT_HOLD_SECONDS = 0
    receiver = receivers()
    make_rule("expiring", channels=[webhook_channel(receiver)])
    loop = add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)[0]

    def race(now):
        """Two threads (two database connections, like two beat processes) evaluate and send at once."""
        barrier = threading.Barrier(2)
        errors = []

        def one():
            try:
                barrier.wait(timeout=10)
                send_all(evaluate_rules(now=now), now=now)
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not errors, errors

    for minute in range(3):
        race(fleet.now + timedelta(minutes=minute))
    HumanLoop.objects.filter(pk=loop.pk).update(status="Completed")
    for minute in range(3, 6):
        race(fleet.now + timedelta(minutes=minute))

    assert states_sent(receiver) == ["firing", "resolved"]
    assert AlertTransition.objects.count() == 2 and AlertDelivery.objects.count() == 2
