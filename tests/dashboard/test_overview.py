"""The overview: per flow definition figures from the precomputed stats, chart, banners."""

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.db.models import ProtectedError

from loops.charts import stacked_bars
from loops.models import HumanLoop, HumanLoopStatusChange, SyncRun, WorkerHeartbeat
from loops.services.overview import build_overview
from loops.services.stats import counts_by_status, refresh_flow_definition_stats
from tests.conftest import make_loop

pytestmark = pytest.mark.django_db


def summary_of(overview, fd):
    return next(s for s in overview.summaries if s.flow_definition.pk == fd.pk)


def test_counts_ages_and_rates_per_flow_definition(world):
    overview = build_overview(now=world.now)
    inv = summary_of(overview, world.fd_inv)
    assert dict(inv.status_counts) == {"InProgress": 2, "Completed": 1, "Failed": 1, "Stopping": 0, "Stopped": 0}
    assert inv.in_progress == 2
    assert inv.oldest_in_progress == world.inv_old.creation_time
    assert inv.oldest_age_seconds == pytest.approx(50 * 60, abs=2)
    assert inv.lifetime_fraction == pytest.approx(50 / 60, abs=0.01)
    assert inv.near_expiry is True
    assert inv.completed_24h == 1
    assert inv.failure_rate == pytest.approx(0.5)
    assert inv.failure_codes == [("Expired", 1)]
    # Review time: created now-3h, completion observed now-2h.
    assert inv.review_median == pytest.approx(3600, abs=1)
    assert inv.review_p90 == pytest.approx(3600, abs=1)
    assert inv.sync_stale is False and inv.sync_failing is False

    rec = summary_of(overview, world.fd_rec)
    assert rec.total == 2 and rec.deleted_count == 1
    # rec-done was first seen Completed: no observed transition, so no review time.
    assert rec.review_samples == 0 and rec.review_median is None
    assert rec.completed_24h == 0  # its only completion was observed 24 h before `now`: outside the window
    assert rec.near_expiry is False and rec.oldest_in_progress is None
    assert rec.sync_stale is True  # never synced

    eu = summary_of(overview, world.fd_inv_eu)
    assert eu.sync_failing is True
    assert eu.lifetime_fraction == pytest.approx(20 / 24, abs=0.01)
    assert eu.near_expiry is True


def test_status_counts_include_completed_loops_which_no_status_index_holds(world):
    """Completed loops are counted as the total minus the other statuses (the status
    indexes leave them out): loops deleted upstream and other flow definitions' loops
    count in neither, a status with no loop is left out, and the window applies to both."""
    def live(fd, **window):
        return HumanLoop.objects.filter(flow_definition=fd, deleted_upstream=False, **window)

    make_loop(world.fd_inv, "inv-done-2", "Completed", world.now - timedelta(days=3), now=world.now)
    make_loop(world.fd_inv, "inv-gone", "Completed", world.now - timedelta(hours=1), now=world.now, deleted=True)
    assert counts_by_status(live(world.fd_inv)) == {"InProgress": 2, "Completed": 2, "Failed": 1}
    assert counts_by_status(live(world.fd_inv, creation_time__gte=world.now - timedelta(days=1))) == {
        "InProgress": 2, "Completed": 1,
    }
    assert counts_by_status(live(world.fd_inv_eu)) == {"InProgress": 1}  # no Completed key
    assert counts_by_status(live(world.fd_rec)) == {"Completed": 1, "Stopped": 1}  # rec-gone is deleted
    assert counts_by_status(live(world.fd_rec, creation_time__gte=world.now)) == {}


def test_a_flow_definition_with_loops_cannot_be_deleted_without_a_database_constraint(world):
    """The loop's foreign key is not a constraint in the database (it cost a query per
    inserted loop); Django's PROTECT still refuses the deletion."""
    with pytest.raises(ProtectedError):
        world.fd_inv.delete()
    assert HumanLoop.objects.filter(flow_definition=world.fd_inv).count() == 4


def test_review_time_percentiles(world):
    # Add four more observed completions on invoices: review times 1 h (existing), 2, 3, 4, 10 h.
    for hours in (2, 3, 4, 10):
        loop = world.inv_done
        clone = type(loop).objects.create(
            flow_definition=world.fd_inv, name=f"rev-{hours}", arn=f"{loop.arn}-{hours}", status="Completed",
            creation_time=world.now - timedelta(hours=hours + 1), first_seen_at=world.now, last_seen_at=world.now,
            status_changed_at=world.now,
        )
        HumanLoopStatusChange.objects.create(
            loop=clone, from_status="InProgress", to_status="Completed", observed_at=world.now - timedelta(hours=1)
        )
    stats = refresh_flow_definition_stats(world.fd_inv)
    assert stats["review_seconds"]["samples"] == 5
    assert stats["review_seconds"]["median"] == pytest.approx(3 * 3600, abs=1)
    # percentile_cont(0.9) over [1,2,3,4,10] h = 4 + 0.6 * 6 = 7.6 h
    assert stats["review_seconds"]["p90"] == pytest.approx(7.6 * 3600, abs=1)


def test_chart_buckets_stack_by_status(world):
    hourly = stacked_bars(build_overview(chart_mode="24h", now=world.now).created)
    assert len(hourly["bars"]) == 24
    # Last 24 h: inv-new, inv-old, inv-done, inv-eu (rec-gone is deleted upstream).
    assert hourly["total"] == 4
    by_status = {}
    for bar in hourly["bars"]:
        for segment in bar["segments"]:
            by_status[segment["status"]] = by_status.get(segment["status"], 0) + segment["n"]
    assert by_status == {"InProgress": 3, "Completed": 1}
    # The newest loop (30 min old) is in the last or second-to-last hourly bar.
    assert hourly["bars"][-1]["total"] + hourly["bars"][-2]["total"] >= 1
    daily = stacked_bars(build_overview(chart_mode="30d", now=world.now).created)
    assert len(daily["bars"]) == 30
    assert daily["total"] == 6  # + inv-fail (2 d) and rec-done (10 d); rec-stopped is 40 d old
    segments = [s for bar in daily["bars"] for s in bar["segments"]]
    assert {s["status"] for s in segments} == {"InProgress", "Completed", "Failed"}
    assert all(daily["plot_top"] <= s["y"] <= daily["plot_top"] + daily["plot_h"] and s["h"] > 0 for s in segments)


def test_overview_page_shows_cards_chart_and_links(viewer_client, world):
    response = viewer_client.get("/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in content and "Loops created per hour, last 24 hours" in content
    assert "close to expiry" in content
    assert f"?flow_definition={quote(world.fd_inv.arn)}&amp;status=InProgress" in content
    assert "median 1 h, p90 1 h" in content
    response = viewer_client.get("/?chart=30d")
    assert "Loops created per day, last 30 days" in response.content.decode()


def test_banner_when_sync_fails(viewer_client, world):
    content = viewer_client.get("/").content.decode()
    assert "Sync is failing for 1 flow definition(s): invoices." in content
    assert "No successful sync for over" in content and "receipts" in content


def test_banner_when_heartbeat_is_stale_or_missing(viewer_client, world):
    assert "heartbeat" not in " ".join(b.message for b in build_overview(now=world.now).banners)
    WorkerHeartbeat.objects.update(last_beat_at=world.now - timedelta(minutes=5))
    content = viewer_client.get("/").content.decode()
    assert "last heartbeat is 5 min old" in content
    WorkerHeartbeat.objects.all().delete()
    assert "No Celery worker has ever reported a heartbeat" in viewer_client.get("/").content.decode()


def test_banner_when_discovery_failed_recently(viewer_client, world):
    SyncRun.objects.create(kind="discovery", region="us-east-1", started_at=world.now, outcome="failed", error="<b>boom</b>")
    content = viewer_client.get("/").content.decode()
    assert "Flow definition discovery failed: &lt;b&gt;boom&lt;/b&gt;" in content
    # A later successful discovery clears it.
    SyncRun.objects.create(kind="discovery", region="us-east-1", started_at=world.now + timedelta(seconds=1), outcome="succeeded")
    assert "discovery failed" not in viewer_client.get("/").content.decode()


def test_overview_without_any_flow_definition(viewer_client, db):
    response = viewer_client.get("/")
    assert response.status_code == 200
    assert "No flow definitions yet" in response.content.decode()


def test_completed_24h_ignores_history_first_seen_completed(world):
    """A first sync of an old account sees old Completed loops for the first time:
    they are not "completed in the last 24 h"; a new loop first seen Completed is."""
    from loops.models import HumanLoop

    young = HumanLoop.objects.create(
        flow_definition=world.fd_rec, name="rec-young", arn=world.rec_done.arn + "-young", status="Completed",
        creation_time=world.now - timedelta(hours=2), first_seen_at=world.now, last_seen_at=world.now,
        status_changed_at=world.now,
    )
    HumanLoopStatusChange.objects.create(loop=world.rec_done, from_status="", to_status="Completed", observed_at=world.now)
    HumanLoopStatusChange.objects.create(loop=young, from_status="", to_status="Completed", observed_at=world.now)
    assert refresh_flow_definition_stats(world.fd_rec)["completed_24h"] == 1


def test_only_active_flow_definitions_can_be_stale(world):
    from loops.models import FlowDefinition

    FlowDefinition.objects.filter(pk=world.fd_rec.pk).update(status="Failed")
    overview = build_overview(now=world.now)
    assert summary_of(overview, world.fd_rec).sync_stale is False
    assert not any("No successful sync" in banner.message for banner in overview.banners)


def test_chart_bars_svg_draws_one_group_per_bar_with_escaped_text():
    from loops.charts import bars_svg

    chart = {
        "plot_top": 10, "plot_h": 188, "height": 220,
        "bars": [
            {"x": 44.5, "w": 18.0, "key": "<b>x</b>", "label": "1 & 2", "show_label": True, "label_x": 53.5, "total": 1,
             "segments": [{"status": "InProgress", "n": 1, "y": 10.0, "h": 188.0}]},
            {"x": 68.5, "w": 18.0, "key": "k2", "label": "l2", "show_label": False, "label_x": 77.5, "total": 0, "segments": []},
        ],
    }
    svg = str(bars_svg(chart))
    assert svg.count("<g>") == 2 and svg.count("</g>") == 2
    assert "<title>&lt;b&gt;x&lt;/b&gt;: 1 loop, 1 InProgress</title>" in svg and "<title>k2: 0 loops</title>" in svg
    assert '<rect class="seg status-inprogress" x="44.5" y="10.0" width="18.0" height="188.0"/>' in svg
    assert ">1 &amp; 2</text>" in svg and ">l2<" not in svg
