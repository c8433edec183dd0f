"""The dashboard in headless Chromium: log in, filter, read a loop's answers; screenshots.

Everything is real: A2I Local (seeded loops plus loops started and completed through
the runtime API, output.json written to moto's S3), the discovery and sync services
importing them into PostgreSQL, Django's live server, Debian's chromium.

Set DOCS_SCREENSHOTS=1 to also refresh docs/screenshots/overview.png and loops.png.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop, WorkerHeartbeat
from loops.services.discovery import discover_flow_definitions
from loops.services.sync import sync_flow_definition
from tests.conftest import PASSWORD, make_user, requires_postgresql, save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), requires_postgresql]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def synced_world(aws):
    """Three seeded flow definitions (600 loops over 30 days) and one built through the API:
    `invoice-review` with a loop completed by worker-7 (observed InProgress, then Completed),
    one failed and one still in progress."""
    aws.seed(flow_definitions=3, loops=600, random_seed=7)
    arn = aws.create_flow_definition("invoice-review", task_availability_lifetime_seconds=7200)
    runtime = aws.client("sagemaker-a2i-runtime")
    for name, doc in (("invoice-17", "inv-17.pdf"), ("invoice-18", "inv-18.pdf"), ("invoice-19", "inv-19.pdf")):
        runtime.start_human_loop(
            HumanLoopName=name,
            FlowDefinitionArn=arn,
            HumanLoopInput={"InputContent": json.dumps({"document": f"s3://docs/{doc}", "model_score": 0.41})},
        )
    fds = discover_flow_definitions([aws.region])
    for fd in fds:
        assert sync_flow_definition(fd.pk, full=True).outcome == "succeeded"
    aws.complete(
        "invoice-17",
        answer={"label": "invoice", "total": "1,250.00 EUR", "confidence": "high"},
        worker_id="worker-7",
        time_spent_seconds=84.2,
    )
    aws.fail("invoice-18", "ValidationError", "The worker response did not match the template.")
    fd = FlowDefinition.objects.get(arn=arn)
    assert sync_flow_definition(fd.pk, full=False).outcome == "succeeded"
    WorkerHeartbeat.objects.create(worker="celery@browser-test", last_beat_at=timezone.now())
    make_user("alice", group="viewer")
    return fd


def test_log_in_filter_and_read_answers(page, live_server, synced_world, screenshot_dir):
    fd = synced_world
    page.goto(f"{live_server.url}/")
    assert "/accounts/login/" in page.url  # anonymous: sent to the login page
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")

    # Overview: one card per flow definition, the chart.
    assert page.locator("article.card.fd").count() == 4
    page.locator("article.card.fd", has_text="invoice-review").wait_for()
    assert page.locator(".chart svg rect.seg").count() > 0
    shots = {"overview": save_screenshot(page, screenshot_dir, "overview")}

    page.get_by_role("link", name="Loops", exact=True).click()
    page.wait_for_url(f"{live_server.url}/loops/")
    assert page.locator("table.loops tbody tr").count() == 50  # one page of the ~600 loops
    shots["loops"] = save_screenshot(page, screenshot_dir, "loops")

    # Filter by flow definition and status through the form.
    page.get_by_label("Flow definition").select_option(fd.arn)
    page.get_by_label("Completed").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/loops/?**")
    assert "status=Completed" in page.url and "flow_definition=" in page.url
    rows = page.locator("table.loops tbody tr")
    assert rows.count() == 1
    assert rows.first.locator("td.col-name").inner_text() == "invoice-17"
    assert page.locator(".count").inner_text().startswith("1 loop")
    shots["loops-filtered"] = save_screenshot(page, screenshot_dir, "loops-filtered")

    # Status InProgress too: two rows, newest first.
    page.get_by_label("InProgress").check()
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_load_state()
    names = page.locator("table.loops tbody td.col-name").all_inner_texts()
    assert names == ["invoice-19", "invoice-17"]

    # Open the completed loop: its answer, read from output.json in S3, beside its input.
    page.get_by_role("link", name="invoice-17").click()
    page.wait_for_url("**/loops/*/")
    answers = page.locator("section", has=page.get_by_role("heading", name="Human answers"))
    answers.get_by_text("Worker worker-7").wait_for()
    assert "1,250.00 EUR" in answers.inner_text()
    assert "s3://docs/inv-17.pdf" in answers.inner_text()
    assert "spent 1 min" in answers.inner_text()
    assert "InProgress → Completed" in page.locator("ol.timeline").inner_text()
    shots["loop"] = save_screenshot(page, screenshot_dir, "loop")

    loop = HumanLoop.objects.get(name="invoice-17")
    assert page.url.endswith(f"/loops/{loop.pk}/")

    # Responsive: on a phone-sized screen nothing scrolls sideways except inside tables.
    page.set_viewport_size({"width": 390, "height": 844})
    for url in ("/", "/loops/", f"/loops/{loop.pk}/"):
        page.goto(live_server.url + url)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), url
    shots["loop-mobile"] = save_screenshot(page, screenshot_dir, "loop-mobile")
    for path in shots.values():
        assert path.exists() and path.stat().st_size > 10_000

    if os.environ.get("DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(shots["overview"], DOCS / "overview.png")
        shutil.copy(shots["loops"], DOCS / "loops.png")
        print(f"docs screenshots: {DOCS / 'overview.png'} {DOCS / 'loops.png'}")


def test_live_refresh_picks_up_new_loops_and_can_be_paused(page, live_server, synced_world, aws):
    """htmx polls the table fragment every 10 s; unticking the toggle stops it."""
    page.goto(f"{live_server.url}/accounts/login/?next=/loops/%3Fflow_definition%3Dinvoice-review")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/loops/?flow_definition=invoice-review")
    assert page.locator("table.loops tbody tr").count() == 3

    aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName="invoice-20", FlowDefinitionArn=synced_world.arn, HumanLoopInput={"InputContent": "{}"}
    )
    sync_flow_definition(synced_world.pk, full=False)
    page.locator("table.loops td.col-name", has_text="invoice-20").wait_for(timeout=15_000)
    assert page.locator("table.loops tbody tr").count() == 4

    page.get_by_label("Live refresh every 10 s").uncheck()
    aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName="invoice-21", FlowDefinitionArn=synced_world.arn, HumanLoopInput={"InputContent": "{}"}
    )
    sync_flow_definition(synced_world.pk, full=False)
    page.wait_for_timeout(12_000)
    assert page.locator("table.loops td.col-name", has_text="invoice-21").count() == 0
