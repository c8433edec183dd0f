"""Flow definition pages and the sync page."""

from datetime import timedelta
from urllib.parse import quote

import pytest

from loops.models import SyncRun

pytestmark = pytest.mark.django_db


def test_flow_definition_list_shows_every_region(viewer_client, world):
    content = viewer_client.get("/flow-definitions/").content.decode()
    assert content.count(">invoices</a>") == 2 and ">receipts</a>" in content
    assert "eu-west-1" in content and "failing" in content
    assert f'href="/loops/?flow_definition={quote(world.fd_inv.arn)}">4</a>' in content


def test_flow_definition_page_shows_settings_counts_and_a_link_to_its_loops(viewer_client, world):
    response = viewer_client.get(f"/flow-definitions/{world.fd_inv.pk}/")
    content = response.content.decode()
    assert response.status_code == 200
    for text in (world.fd_inv.arn, "Review invoices", "s3://out-invoices/results", "1 h (3,600 s)", "50.0 %"):
        assert text in content, text
    assert f'href="/loops/?flow_definition={quote(world.fd_inv.arn, safe="")}"' in content
    assert "See its 4 loops" in content


def test_sync_page_lists_runs_with_durations_and_failed_ones_stand_out(viewer_client, world):
    SyncRun.objects.create(
        flow_definition=world.fd_inv, kind="incremental", started_at=world.now - timedelta(minutes=3),
        finished_at=world.now - timedelta(minutes=3) + timedelta(seconds=4), pages=2, loops_seen=150, created=3,
        updated=7, outcome="succeeded",
    )
    SyncRun.objects.create(
        flow_definition=world.fd_inv_eu, kind="full", started_at=world.now - timedelta(minutes=1),
        finished_at=world.now, outcome="failed", error="AccessDeniedException: <denied>",
    )
    content = viewer_client.get("/sync/").content.decode()
    assert '<tr class="outcome-succeeded">' in content and '<tr class="outcome-failed">' in content
    assert ">4 s<" in content and ">1 min<" in content
    assert "AccessDeniedException: &lt;denied&gt;" in content
    assert content.index("outcome-failed") < content.index("outcome-succeeded")  # newest first
    failed_only = viewer_client.get("/sync/?outcome=failed").content.decode()
    assert "outcome-failed" in failed_only and '<tr class="outcome-succeeded">' not in failed_only
