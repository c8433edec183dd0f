"""What events change on the pages: the loop's timeline says whose time each row has, and the
overview's review time and 24-hour completions use A2I's times where an event gave them."""

from datetime import timedelta

import pytest

from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange
from loops.services.event_parsing import parse_event
from loops.services.events import apply_events
from loops.services.overview import build_overview
from loops.services.stats import refresh_flow_definition_stats
from tests.conftest import make_loop

from .conftest import for_loop, make_event

pytestmark = pytest.mark.django_db


def apply(*events):
    return apply_events([parse_event(e) for e in events], transport="https")


def test_the_timeline_shows_each_rows_source_and_whose_time_it_is(viewer_client, world):
    loop = world.inv_new
    HumanLoopStatusChange.objects.create(loop=loop, from_status="", to_status="InProgress", observed_at=world.now)
    HumanLoopStatusChange.objects.create(loop=loop, from_status="InProgress", to_status="Stopping",
                                         observed_at=world.now, source="action")
    HumanLoop.objects.filter(pk=loop.pk).update(status="Stopping")
    apply(for_loop(loop, "Stopped", time=world.now + timedelta(seconds=2)))

    page = viewer_client.get(f"/loops/{loop.pk}/").content.decode()
    timeline = page[page.index('<ol class="timeline">'):page.index("</ol>")]
    items = timeline.split("<li")[1:]
    assert [('source-sync' in i, 'source-action' in i, 'source-event' in i) for i in items] == [
        (True, False, False), (False, True, False), (False, False, True),
    ]
    assert '<span class="badge source">sync</span>' in items[0] and "· observed" in items[0]
    assert '<span class="badge source">action</span>' in items[1] and "· observed" in items[1]
    assert '<span class="badge source">event</span>' in items[2] and "· A2I’s time" in items[2]
    assert "Stopping → Stopped" in items[2]


def test_review_time_uses_a2is_completion_time_where_an_event_gave_it(world):
    fd = world.fd_inv
    # The sync noticed this completion 2 h after creation; A2I completed it after 30 min.
    created = world.now - timedelta(hours=5)
    noticed = make_loop(fd, "noticed-late", "Completed", created, now=world.now)
    HumanLoopStatusChange.objects.create(loop=noticed, from_status="", to_status="InProgress", observed_at=created)
    HumanLoopStatusChange.objects.create(loop=noticed, from_status="InProgress", to_status="Completed",
                                         observed_at=created + timedelta(hours=2))
    # A loop first heard of through its event (the sync never saw it): 10 min of review.
    first_seen = make_event("event-only", time=world.now - timedelta(hours=1), created=world.now - timedelta(hours=1, minutes=10),
                            fd_arn=fd.arn)
    refresh_flow_definition_stats(fd)
    before = FlowDefinition.objects.get(pk=fd.pk).stats["review_seconds"]
    assert before["samples"] == 2  # inv-done (1 h) and noticed-late (2 h, observed)

    apply(for_loop(noticed, time=created + timedelta(minutes=30)), first_seen)
    refresh_flow_definition_stats(fd)
    stats = FlowDefinition.objects.get(pk=fd.pk).stats

    # 1 h (inv-done, observed), 30 min (A2I's), 10 min (A2I's, first seen through the event).
    assert stats["review_seconds"]["samples"] == 3
    assert stats["review_seconds"]["median"] == pytest.approx(1800, abs=1)
    summary = next(s for s in build_overview(now=world.now).summaries if s.flow_definition.pk == fd.pk)
    assert summary.review_median == pytest.approx(1800, abs=1)
    # Completions in the last 24 h: inv-done, noticed-late and the event's loop (created over 24 h
    # ago would not matter: its completion time is A2I's).
    assert stats["completed_24h"] == 3


def test_a_loop_first_seen_completed_by_an_event_counts_in_the_last_24_hours_whatever_its_age(world):
    fd = world.fd_rec
    old = make_event("old-but-just-done", time=world.now - timedelta(minutes=5), created=world.now - timedelta(days=3),
                     fd_arn=fd.arn)
    apply(old)
    stats = refresh_flow_definition_stats(fd)
    assert stats["completed_24h"] == 1
    assert stats["review_seconds"]["samples"] == 1
    assert stats["review_seconds"]["median"] == pytest.approx(3 * 86400 - 300, abs=1)
