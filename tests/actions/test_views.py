"""The dashboard's action pages: confirm, execute, batch progress, audit; permissions and CSRF."""

import re
from urllib.parse import urlencode

import pytest
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.urls import reverse

from loops.models import HumanLoop, LoopAction, LoopActionBatch
from loops.services import actions
from tests.conftest import a2i_status, loops_named, start_loops, sync

pytestmark = pytest.mark.django_db

CONFIRM, EXECUTE, AUDIT = "/actions/confirm/", "/actions/execute/", "/actions/audit/"


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def csrf_client(user) -> tuple[Client, str]:
    """A client that enforces CSRF like a browser, and a valid token from a real page."""
    client = logged_in(user, enforce_csrf_checks=True)
    page = client.get(reverse("loops:loop_list"))
    assert page.status_code == 200
    return client, client.cookies["csrftoken"].value


def selection(action, loops, **extra):
    return {"action": action, "loop": [loop.pk for loop in loops], **extra}


def test_the_confirmation_page_shows_what_will_happen_and_reaches_nothing(aws, a2i_world, operator):
    chosen = loops_named(a2i_world["in_progress"] + a2i_world["completed"])

    page = logged_in(operator).post(CONFIRM, selection("stop", chosen))

    assert page.status_code == 200
    html = page.content.decode()
    assert "Stop: 5 loops" in html
    assert re.search(r'id="eligible-count">3<', html)
    assert "2: not InProgress" in html
    assert html.count("skipped: not InProgress") == 2
    assert 'name="reason"' in html and f'action="{EXECUTE}"' in html
    for loop in chosen:
        assert f'name="loop" value="{loop.pk}"' in html
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"]} == {"InProgress"}
    assert LoopActionBatch.objects.count() == 0


def test_execute_with_a_reason_stops_the_loops_and_shows_the_batch(aws, a2i_world, operator):
    chosen = loops_named(a2i_world["in_progress"][:2] + a2i_world["completed"][:1])

    response = logged_in(operator).post(EXECUTE, selection("stop", chosen, reason="cost spike"), follow=True)

    batch = LoopActionBatch.objects.get()
    assert response.redirect_chain == [(reverse("actions:batch", args=[batch.pk]), 302)]
    html = response.content.decode()
    assert "2 stopped, 1 skipped (not InProgress)" in html
    assert "cost spike" in html
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"][:2]} <= {"Stopping", "Stopped"}
    assert a2i_status(aws, a2i_world["in_progress"][2]) == "InProgress"  # not selected
    assert [loop.status for loop in loops_named(a2i_world["in_progress"][:2])] == ["Stopping", "Stopping"]


def test_execute_without_a_reason_shows_the_confirmation_again_and_does_nothing(aws, a2i_world, operator):
    chosen = loops_named(a2i_world["in_progress"][:1])

    page = logged_in(operator).post(EXECUTE, selection("stop", chosen, reason="   "))

    assert page.status_code == 200
    assert "Give a reason" in page.content.decode()
    assert LoopActionBatch.objects.count() == 0
    assert a2i_status(aws, a2i_world["in_progress"][0]) == "InProgress"


def test_the_loop_page_buttons_drive_stop_then_delete_in_the_background(aws, a2i_world, operator, django_capture_on_commit_callbacks):
    client = logged_in(operator)
    (loop,) = loops_named(a2i_world["in_progress"][:1])

    page = client.post(CONFIRM, selection("stop_and_delete", [loop]))
    assert "Stop, then delete: 1 loop" in page.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(EXECUTE, selection("stop_and_delete", [loop], reason="wrong flow definition"))

    # Waiting for Stopped does not belong in a web request: even one loop is queued.
    batch = LoopActionBatch.objects.get()
    assert response["Location"] == reverse("actions:batch", args=[batch.pk])
    assert len(callbacks) == 1 and batch.state == "pending"
    assert a2i_status(aws, loop.name) == "InProgress"

    actions.execute_batch(batch.pk)  # what the worker does

    assert a2i_status(aws, loop.name) is None
    loop.refresh_from_db()
    assert loop.deleted_upstream
    assert LoopAction.objects.get().outcome == "succeeded"


def test_select_all_resolves_the_list_filters_shows_n_and_ignores_loops_arriving_later(aws, a2i_world, operator):
    client = logged_in(operator)
    filters = urlencode({"status": "InProgress", "flow_definition": a2i_world["fd"].arn})

    page = client.post(CONFIRM, {"action": "stop", "select_all": "1", "filters": filters})

    html = page.content.decode()
    assert "Stop: 3 loops" in html
    upto = re.search(r'name="upto" value="(\d+)"', html).group(1)
    assert 'name="select_all" value="1"' in html
    # A loop synced after the page was shown matches the filters but was not confirmed.
    late = start_loops(aws, a2i_world["fd"], 1, prefix="late")
    sync(a2i_world["fd"])

    client.post(EXECUTE, {"action": "stop", "select_all": "1", "filters": filters, "upto": upto, "reason": "all busy"})

    batch = LoopActionBatch.objects.get()
    assert batch.total == 3
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"]} <= {"Stopping", "Stopped"}
    assert a2i_status(aws, late[0]) == "InProgress"
    assert {a2i_status(aws, n) for n in a2i_world["completed"]} == {"Completed"}


def test_invalid_selections_are_a_clear_400_never_a_500(a2i_world, operator):
    client = logged_in(operator)
    cases = [
        {"action": "stop"},  # nothing selected
        {"action": "stop", "loop": "abc"},
        {"action": "explode", "loop": "1"},
        {"action": "stop", "select_all": "1", "filters": "status=Bogus"},
        {"action": "stop", "select_all": "1", "filters": "created_after=yesterday"},
    ]
    for data in cases:
        response = client.post(CONFIRM, data)
        assert response.status_code == 400, data
        assert "Nothing was done" in response.content.decode()
        response = client.post(EXECUTE, {**data, "reason": "r"})
        assert response.status_code == 400, data
    # Unknown ids select nothing: refused at execution, nothing recorded.
    response = client.post(EXECUTE, {"action": "stop", "loop": "999999", "reason": "r"})
    assert response.status_code == 400 and "no loops selected" in response.content.decode()
    assert LoopActionBatch.objects.count() == 0


def test_a_viewer_is_refused_with_403_even_with_a_valid_csrf_token(aws, a2i_world, viewer):
    client, token = csrf_client(viewer)
    chosen = loops_named(a2i_world["in_progress"] + a2i_world["completed"])

    for action in ("stop", "delete", "stop_and_delete"):
        for url in (CONFIRM, EXECUTE):
            response = client.post(url, {**selection(action, chosen, reason="forged"), "csrfmiddlewaretoken": token})
            assert response.status_code == 403, (url, action)
        response = client.post(EXECUTE, {"action": action, "select_all": "1", "filters": "", "reason": "x", "csrfmiddlewaretoken": token})
        assert response.status_code == 403

    assert {a2i_status(aws, n) for n in a2i_world["in_progress"]} == {"InProgress"}
    assert {a2i_status(aws, n) for n in a2i_world["completed"]} == {"Completed"}
    assert LoopAction.objects.count() == 0


def test_csrf_is_enforced_on_confirm_and_execute(aws, a2i_world, operator):
    client, token = csrf_client(operator)
    chosen = loops_named(a2i_world["in_progress"][:1])

    for url in (CONFIRM, EXECUTE):
        response = client.post(url, selection("stop", chosen, reason="no token"))
        assert response.status_code == 403, url
    assert a2i_status(aws, a2i_world["in_progress"][0]) == "InProgress"

    response = client.post(EXECUTE, {**selection("stop", chosen, reason="with token"), "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert a2i_status(aws, a2i_world["in_progress"][0]) in ("Stopping", "Stopped")


def test_login_is_required_everywhere(a2i_world):
    client = Client()
    for url in (AUDIT, reverse("actions:batch", args=[1])):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    for url in (CONFIRM, EXECUTE):
        response = client.post(url, {"action": "stop", "loop": "1", "reason": "x"})
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_confirm_and_execute_accept_only_post(operator):
    client = logged_in(operator)
    assert client.get(CONFIRM).status_code == 405
    assert client.get(EXECUTE).status_code == 405


def test_a_bulk_batch_page_polls_its_progress_until_done(aws, flow_definition, operator, settings, django_capture_on_commit_callbacks):
    names = start_loops(aws, flow_definition, 21, prefix="many")
    sync(flow_definition)
    client = logged_in(operator)

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(EXECUTE, selection("stop", loops_named(names), reason="bulk"))
    batch = LoopActionBatch.objects.get()
    assert response["Location"] == reverse("actions:batch", args=[batch.pk])
    page = client.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 2s"' in page and "Pending: <span data-outcome=\"pending\">21<" in page
    assert {a2i_status(aws, n) for n in names} == {"InProgress"}

    actions.execute_batch(batch.pk)  # what the worker does

    fragment = client.get(f"{response['Location']}?fragment=progress", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in fragment  # done: polling stops
    assert "21 stopped" in fragment and '<span data-outcome="succeeded">21<' in fragment
    assert "<html" not in fragment


def test_the_audit_page_lists_attempts_and_streams_csv(aws, a2i_world, operator, auditor, viewer):
    selected = loops_named(a2i_world["in_progress"][:1] + a2i_world["completed"][:1])
    logged_in(operator).post(EXECUTE, selection("stop", selected, reason="<b>why</b>"))
    assert logged_in(viewer).get(AUDIT).status_code == 403  # the reasons are for auditors
    client = logged_in(auditor)

    page = client.get(AUDIT, {"outcome": "skipped"})
    html = page.content.decode()
    assert page.status_code == 200
    assert a2i_world["completed"][0] in html and a2i_world["in_progress"][0] not in html
    assert "&lt;b&gt;why&lt;/b&gt;" in html and "<b>why</b>" not in html

    response = client.get(AUDIT, {"_export": "csv"})
    assert response["Content-Type"] == "text/csv"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "created_at,finished_at,user,loop,loop_arn,action,reason,outcome,detail,batch"
    assert len(lines) == 3
    assert client.get(AUDIT, {"_export": "csv", "batch": "x"}).status_code == 400
    # An unknown format is refused with a short echo of the value, not ignored (the page's
    # links would each repeat it: 64 KB of it cost the fuzz test 2 s of CPU).
    refused = client.get(AUDIT, {"_export": "€" * 21846})
    assert refused.status_code == 400
    assert refused.content.decode() == f"Export refused: _export must be csv, not '{'€' * 40}…'.\n"
    assert client.get(AUDIT, {"page": "zzz", "sort": "nonsense"}).status_code == 200


def _render_partial(user, loop) -> str:
    request = RequestFactory().get("/")
    request.user = user
    return render_to_string("loops/actions/_loop_actions.html", {"loop": loop}, request=request)


def test_the_loop_page_partial_offers_only_allowed_buttons(a2i_world, operator, viewer):
    busy, done = loops_named(a2i_world["in_progress"][:1] + a2i_world["completed"][:1])

    html = _render_partial(operator, busy)
    assert 'id="action-stop"' in html and 'id="action-stop-and-delete"' in html and 'id="action-delete"' not in html
    html = _render_partial(operator, done)
    assert 'id="action-delete"' in html and 'id="action-stop"' not in html
    for loop in (busy, done):
        html = _render_partial(viewer, loop)
        assert "action-stop" not in html and "action-delete" not in html
        assert f"action=\"{CONFIRM}\"" not in html
    HumanLoop.objects.filter(pk=done.pk).update(deleted_upstream=True)
    done.refresh_from_db()
    assert 'id="action-delete"' not in _render_partial(operator, done)


def test_the_loop_page_shows_the_buttons_and_the_audit_rows(aws, a2i_world, operator, viewer, auditor):
    (loop,) = loops_named(a2i_world["completed"][:1])
    logged_in(operator).post(EXECUTE, selection("stop", [loop], reason="shown on the loop page"))

    html = logged_in(operator).get(reverse("loops:loop", args=[loop.pk])).content.decode()
    assert 'id="action-delete"' in html
    assert "shown on the loop page" in html and "not InProgress; status is Completed" in html
    html = logged_in(viewer).get(reverse("loops:loop", args=[loop.pk])).content.decode()
    assert 'id="action-delete"' not in html and "shown on the loop page" not in html
    html = logged_in(auditor).get(reverse("loops:loop", args=[loop.pk])).content.decode()
    assert 'id="action-delete"' not in html and "shown on the loop page" in html
