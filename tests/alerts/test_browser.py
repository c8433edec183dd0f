"""In headless Chromium: an operator creates a rule on the alerts page, sees it fire, mutes it. Screenshots printed."""

from datetime import timedelta

import pytest

from loops.models import AlertRule, AlertState
from tests.conftest import PASSWORD, requires_postgresql, save_screenshot

from .conftest import add_loops

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), requires_postgresql]


def test_create_a_rule_see_it_fire_and_mute_it(page, live_server, screenshot_dir, fleet, operator, settings):
    settings.A2I_ALERT_HOLD_SECONDS = 0
    add_loops(fleet.inv, "InProgress", 3, age=timedelta(minutes=56), now=fleet.now, prefix="abandoned")

    page.goto(f"{live_server.url}/accounts/login/?next=/alerts/")
    page.get_by_label("Username").fill(operator.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/alerts/")
    assert "No alert rules yet." in page.inner_text("table.alert-rules")

    page.get_by_role("link", name="New rule").click()
    page.get_by_label("Name").fill("Invoices about to expire")
    page.get_by_label("Kind").select_option("expiring")
    page.get_by_label("Scope").select_option(label="invoices (us-east-1)")
    page.get_by_label("Share").fill("0.8")
    save_screenshot(page, screenshot_dir, "alerts-new-rule")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url(f"{live_server.url}/alerts/")
    assert "Rule “Invoices about to expire” saved" in page.inner_text("ul.messages")

    # The minute tick, now: the rule fires with the three abandoned loops.
    page.get_by_role("button", name="Evaluate now").click()
    row = page.locator("tr.rule", has_text="Invoices about to expire")
    row.locator(".alert-firing").wait_for()
    assert "firing (1)" in row.inner_text()
    assert "3 InProgress loop(s) older than 80%" in row.inner_text()
    save_screenshot(page, screenshot_dir, "alerts-firing")

    # The overview says so too.
    page.get_by_role("link", name="Overview").click()
    banner = page.locator(".banner", has_text="alert rule(s) firing")
    assert "Invoices about to expire" in banner.inner_text()
    banner.get_by_role("link", name="See the alerts").click()
    page.wait_for_url(f"{live_server.url}/alerts/")

    # "See them" opens the loop list filtered to exactly those loops.
    row = page.locator("tr.rule", has_text="Invoices about to expire")
    row.get_by_role("link", name="See them").click()
    page.wait_for_url("**/loops/?**")
    assert page.locator("table.loops tbody tr").count() == 3
    page.go_back()

    row = page.locator("tr.rule", has_text="Invoices about to expire")
    row.get_by_label("Mute Invoices about to expire").select_option("4h")
    row.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"{live_server.url}/alerts/")
    assert "muted until" in page.locator("tr.rule", has_text="Invoices about to expire").inner_text()
    save_screenshot(page, screenshot_dir, "alerts-muted")

    rule = AlertRule.objects.get()
    assert rule.muted_until is not None and AlertState.objects.get(rule=rule).status == "firing"
