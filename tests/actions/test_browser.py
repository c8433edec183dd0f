"""Headless Chromium through the real pages: the admin confirmation flow and the dashboard bulk stop.

The live server runs in this process, so its boto3 clients use the A2I Local
endpoints the `aws` fixture put in the environment.
"""

import pytest

from loops.models import LoopAction, LoopActionBatch
from tests.conftest import PASSWORD, a2i_status, loops_named, save_screenshot, start_loops, sync

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, base_url: str, login_path: str, user) -> None:
    page.goto(f"{base_url}{login_path}")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form [type=submit]").first.click()
    page.wait_for_load_state()


def test_admin_stop_goes_through_the_confirmation_page(live_server, page, screenshot_dir, aws, a2i_world, operator):
    busy = loops_named(a2i_world["in_progress"][:2])
    done = loops_named(a2i_world["completed"][:1])
    log_in(page, live_server.url, "/admin/login/?next=/admin/loops/humanloop/", operator)
    assert "/admin/loops/humanloop/" in page.url

    for loop in busy + done:
        page.check(f"input[name=_selected_action][value='{loop.pk}']")
    page.select_option("select[name=action]", "stop_human_loops")
    page.click("button[name=index]")

    page.wait_for_selector("#confirm-loops")
    summary = page.inner_text("#eligible-summary")
    assert "2 of the 3 selected loops will be" in summary
    assert "skipped: not InProgress" in page.inner_text("#confirm-loops")
    save_screenshot(page, screenshot_dir, "actions-admin-confirmation")
    assert {a2i_status(aws, loop.name) for loop in busy} == {"InProgress"}  # nothing sent yet

    page.fill("#id_reason", "bad input data")
    page.click("input[type=submit][value^='Yes, stop']")
    page.wait_for_selector("ul.messagelist")

    message = page.inner_text("ul.messagelist")
    assert "2 stopped, 1 skipped (not InProgress)" in message
    save_screenshot(page, screenshot_dir, "actions-admin-done")
    assert {a2i_status(aws, loop.name) for loop in busy} <= {"Stopping", "Stopped"}
    assert a2i_status(aws, done[0].name) == "Completed"
    assert set(LoopAction.objects.values_list("reason", flat=True)) == {"bad input data"}


def test_dashboard_bulk_stop_from_the_loop_list(live_server, page, screenshot_dir, aws, a2i_world, operator):
    busy = loops_named(a2i_world["in_progress"])
    log_in(page, live_server.url, "/accounts/login/?next=/loops/", operator)
    page.goto(f"{live_server.url}/loops/?status=InProgress&status=Completed")

    for loop in busy[:2]:
        page.check(f"input[name=loop][value='{loop.pk}']")
    page.check(f"input[name=loop][value='{loops_named(a2i_world['completed'][:1])[0].pk}']")
    page.select_option("#bulk-action", "stop")
    page.click("#bulk-form button[type=submit]")

    page.wait_for_selector("#confirm-loops")
    assert page.inner_text("h1") == "Stop: 3 loops"
    assert page.inner_text("#eligible-count") == "2"
    save_screenshot(page, screenshot_dir, "actions-dashboard-confirmation")

    # The reason is required: the browser does not even submit without it.
    page.click("#confirm-button")
    assert page.url.endswith("/actions/confirm/")
    assert LoopActionBatch.objects.count() == 0

    page.fill("textarea[name=reason]", "wrong flow definition")
    page.click("#confirm-button")
    page.wait_for_selector("#batch-summary")

    assert page.inner_text("#batch-summary") == "2 stopped, 1 skipped (not InProgress)"
    save_screenshot(page, screenshot_dir, "actions-dashboard-batch")
    assert {a2i_status(aws, loop.name) for loop in busy[:2]} <= {"Stopping", "Stopped"}
    assert a2i_status(aws, busy[2].name) == "InProgress"

    # The loop page shows the attempt; a Stopping loop offers only "Stop, then delete".
    page.goto(f"{live_server.url}/loops/{busy[0].pk}/")
    audit = page.inner_text("#loop-audit")
    assert "wrong flow definition" in audit and "Succeeded" in audit
    assert page.locator("#action-stop").count() == 0 and page.locator("#action-stop-and-delete").count() == 1
    save_screenshot(page, screenshot_dir, "actions-loop-page")


def test_dashboard_stop_all_matching_loops_shows_n_before_confirming(live_server, page, aws, a2i_world, operator):
    log_in(page, live_server.url, "/accounts/login/?next=/loops/", operator)
    page.goto(f"{live_server.url}/loops/?status=InProgress")

    page.check("#bulk-form input[name=select_all]")
    page.select_option("#bulk-action", "stop")
    page.click("#bulk-form button[type=submit]")

    page.wait_for_selector("#confirm-loops")
    assert page.inner_text("h1") == "Stop: 3 loops"
    page.fill("textarea[name=reason]", "stop everything in progress")
    page.click("#confirm-button")
    page.wait_for_selector("#batch-summary")
    assert page.inner_text("#batch-summary") == "3 stopped"
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"]} <= {"Stopping", "Stopped"}
    assert {a2i_status(aws, n) for n in a2i_world["completed"]} == {"Completed"}


def test_the_batch_page_follows_a_background_batch_until_done(live_server, page, aws, flow_definition, operator):
    from loops.services import actions

    names = start_loops(aws, flow_definition, 21, prefix="bg")
    sync(flow_definition)
    batch = actions.create_batch(operator, "stop", "background", [loop.pk for loop in loops_named(names)])
    log_in(page, live_server.url, f"/accounts/login/?next=/actions/batches/{batch.pk}/", operator)
    assert page.inner_text("[data-outcome=pending]") == "21"
    assert page.locator("#batch-summary").count() == 0

    actions.execute_batch(batch.pk)  # what the Celery worker does, meanwhile

    page.wait_for_selector("#batch-summary", timeout=10_000)  # htmx polls every 2 s
    assert page.inner_text("#batch-summary") == "21 stopped"
    assert page.inner_text("[data-outcome=succeeded]") == "21"
