"""/metrics: parsed back with prometheus_client's own parser, values equal to the database's;
protected by a token or the address allowlist; counters cheap and exact through their rollups."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from loops.models import AlertState, HumanLoop, LoopAction, LoopActionBatch, MetricRollup, ReceivedEvent, SyncRun
from loops.services import metrics
from loops.services.alerts import evaluate_rules
from loops.services.tokens import create_token

from .conftest import make_rule


def scrape(client=None, **headers) -> dict:
    """{(sample name, frozenset(labels)): value} from a GET /metrics."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def metrics_client(viewer):
    _row, token = create_token(viewer, "prometheus")
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_metrics_equal_the_database(world, metrics_client, settings):
    settings.A2I_ALERT_HOLD_SECONDS = 0
    now = timezone.now()
    SyncRun.objects.create(flow_definition=world.fd_inv, kind="incremental", started_at=now, outcome="succeeded")
    SyncRun.objects.create(flow_definition=world.fd_inv, kind="incremental", started_at=now, outcome="succeeded")
    SyncRun.objects.create(flow_definition=world.fd_rec, kind="full", started_at=now, outcome="failed")
    make_rule("expiring")  # world's inv-old and inv-eu are at 83 % of their lifetimes
    make_rule("backlog", count=100)
    evaluate_rules()

    samples = scrape(**metrics_client)

    for fd in (world.fd_inv, world.fd_rec, world.fd_inv_eu):
        fd.refresh_from_db()
        labels = {"flow_definition": fd.name, "region": fd.region}
        for status in ("InProgress", "Completed", "Failed", "Stopping", "Stopped"):
            expected = HumanLoop.objects.filter(flow_definition=fd, status=status, deleted_upstream=False).count()
            assert value(samples, "a2i_human_loops", status=status, **labels) == expected, (fd, status)
        if fd.last_sync_succeeded_at:
            synced = value(samples, "a2i_sync_last_success_timestamp_seconds", **labels)
            assert synced == pytest.approx(fd.last_sync_succeeded_at.timestamp())
    inv = {"flow_definition": "invoices", "region": "us-east-1"}
    assert value(samples, "a2i_human_loops_expiring", **inv) == 1
    assert value(samples, "a2i_human_loops_expiring", flow_definition="invoices", region="eu-west-1") == 1  # 20 h of 1 d
    assert value(samples, "a2i_human_loops_expiring", flow_definition="receipts", region="us-east-1") == 0
    assert value(samples, "a2i_human_loop_oldest_in_progress_age_seconds", **inv) == pytest.approx(50 * 60, abs=30)
    assert value(samples, "a2i_review_time_seconds", quantile="0.9", **inv) == pytest.approx(3600)  # inv-done: 3 h old, done 2 h ago
    assert value(samples, "a2i_sync_runs_total", kind="incremental", outcome="succeeded") == 2
    assert value(samples, "a2i_sync_runs_total", kind="full", outcome="failed") == 1
    assert value(samples, "a2i_alerts_firing", rule="expiring rule") == AlertState.objects.filter(status="firing").count() == 2
    assert value(samples, "a2i_alerts_firing", rule="backlog rule") == 0
    # No loop names or worker ids as labels.
    labels_seen = {key for (_name, labels) in samples for key, _ in labels}
    assert labels_seen <= {"flow_definition", "region", "status", "quantile", "kind", "outcome", "action", "rule", "result"}


def test_the_events_counter_counts_received_events_by_result(world, metrics_client):
    now = timezone.now()
    for n, result in enumerate(["applied", "applied", "duplicate", "stale"]):
        ReceivedEvent.objects.create(
            event_id=f"e-{n if result != 'duplicate' else 0}", received_at=now, event_time=now,
            transport="https", status="Completed", result=result,
        )
    metrics.roll_up_counters()
    ReceivedEvent.objects.create(event_id="e-9", received_at=now, event_time=now, transport="sqs", status="Failed", result="applied")
    samples = scrape(**metrics_client)
    # The rollup's totals plus the row written after it.
    assert value(samples, "a2i_events_received_total", result="applied") == 3
    assert value(samples, "a2i_events_received_total", result="duplicate") == 1
    assert value(samples, "a2i_events_received_total", result="stale") == 1


def test_counters_stay_exact_across_rollups_and_unfinished_rows(world, operator, metrics_client):
    now = timezone.now()
    running = SyncRun.objects.create(flow_definition=world.fd_inv, kind="full", started_at=now, outcome="running")
    SyncRun.objects.create(flow_definition=world.fd_inv, kind="incremental", started_at=now, outcome="succeeded")
    batch = LoopActionBatch.objects.create(user=operator, action="stop", reason="test", state="running", total=2)
    LoopAction.objects.create(batch=batch, user=operator, loop=world.inv_new, action="stop", reason="test", outcome="succeeded")
    pending = LoopAction.objects.create(batch=batch, user=operator, loop=world.inv_old, action="stop", reason="test")

    metrics.roll_up_counters()
    samples = scrape(**metrics_client)
    assert value(samples, "a2i_sync_runs_total", kind="full", outcome="running") == 1
    assert value(samples, "a2i_actions_total", action="stop", outcome="pending") == 1

    # The unfinished rows finish after the rollup: counted once, with their final outcome.
    SyncRun.objects.filter(pk=running.pk).update(outcome="succeeded")
    LoopAction.objects.filter(pk=pending.pk).update(outcome="failed")
    metrics.roll_up_counters()
    SyncRun.objects.create(flow_definition=world.fd_rec, kind="incremental", started_at=now, outcome="succeeded")
    samples = scrape(**metrics_client)
    assert value(samples, "a2i_sync_runs_total", kind="full", outcome="succeeded") == 1
    assert value(samples, "a2i_sync_runs_total", kind="incremental", outcome="succeeded") == 2
    assert ("a2i_sync_runs_total", frozenset({"kind": "full", "outcome": "running"}.items())) not in samples
    assert value(samples, "a2i_actions_total", action="stop", outcome="failed") == 1
    assert value(samples, "a2i_actions_total", action="stop", outcome="succeeded") == 1
    for source, model in (("sync_runs", SyncRun), ("actions", LoopAction)):
        totals = metrics.counter_totals(source)
        assert sum(totals.values()) == model.objects.count()


def test_a_row_left_unfinished_for_a_day_does_not_hold_the_rollup_back(world):
    long_ago = timezone.now() - timedelta(days=2)
    stuck = SyncRun.objects.create(flow_definition=world.fd_inv, kind="full", started_at=long_ago, outcome="running")
    later = SyncRun.objects.create(flow_definition=world.fd_inv, kind="full", started_at=timezone.now(), outcome="succeeded")
    metrics.roll_up_counters()
    assert MetricRollup.objects.get(source="sync_runs").upto_id == later.pk > stuck.pk


def test_metrics_need_a_token_or_an_allowed_address(db, viewer, settings):
    anonymous = Client()
    response = anonymous.get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer a2i_not-a-real-token").status_code == 401

    settings.A2I_METRICS_ALLOW = ["10.0.0.0/8", "192.0.2.7"]
    assert anonymous.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert anonymous.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert anonymous.get("/metrics", REMOTE_ADDR="192.0.2.8").status_code == 401

    nobody = viewer.__class__.objects.create_user("no-role", password="x")
    _row, token = create_token(nobody, "no role")
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403


def test_the_sample_grafana_dashboard_queries_only_metrics_we_export(world, metrics_client):
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"] for name in re.findall(r"a2i_\w+", target["expr"])}
    response = Client().get("/metrics", **metrics_client)
    families = list(text_string_to_metric_families(response.content.decode()))
    exported = {f.name for f in families} | {f"{f.name}_total" for f in families if f.type == "counter"}
    assert queried and queried <= exported, queried - exported
