"""The Content-Security-Policy in a real browser: no page of the dashboard or the admin has
anything it blocks, and the loop list's script still works under it."""

import pytest

from tests.conftest import PASSWORD, make_user, requires_postgresql

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), requires_postgresql]


def test_no_page_breaks_the_policy_and_the_loop_lists_script_runs(page, live_server, world):
    make_user("root", superuser=True)
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")

    response = page.goto(f"{live_server.url}/loops/")
    assert "script-src 'self'" in response.headers["content-security-policy"]  # the browser enforced one
    # The page's own script: "select every loop on this page" ticks the rows.
    page.locator("input[data-select-page]").check()
    assert page.locator("#loop-results input[name=loop]:checked").count() == 7
    for path in (
        "/", f"/loops/{world.inv_fail.pk}/", "/flow-definitions/", "/sync/", "/actions/audit/",
        "/admin/", "/admin/loops/humanloop/", f"/admin/loops/humanloop/{world.inv_new.pk}/change/",
        "/admin/loops/humanloop/?creation_time__year=2026", "/admin/auth/user/add/",
    ):
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
    assert not violations, violations
