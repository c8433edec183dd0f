"""The admin: read-only mirrors, the stop/delete actions with their confirmation page, permissions."""

import pytest
from django.test import Client
from django.urls import reverse

from loops.models import HumanLoop, LoopAction, LoopActionBatch
from loops.services import actions
from tests.conftest import a2i_status, loops_named, start_loops, sync

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/loops/humanloop/"


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def action_post(action: str, loops, **extra) -> dict:
    # What the changelist's action bar posts (index = which action bar).
    return {"action": action, "_selected_action": [str(loop.pk) for loop in loops], "index": "0", **extra}


def confirm_post(action: str, loops, **extra) -> dict:
    # What the confirmation page posts back, like Django's delete confirmation.
    return {"action": action, "_selected_action": [str(loop.pk) for loop in loops], "post": "yes", **extra}


def test_the_admin_confirmation_flow_stops_only_after_post_yes_with_a_reason(aws, a2i_world, operator):
    client = logged_in(operator)
    selection = loops_named(a2i_world["in_progress"][:2] + a2i_world["completed"][:1])

    page = client.post(CHANGELIST, action_post("stop_human_loops", selection))

    assert page.status_code == 200
    html = page.content.decode()
    assert "2</strong> of the 3 selected loops will be" in html
    assert "skipped: not InProgress" in html
    for loop in selection:
        assert loop.name in html
        assert f'name="_selected_action" value="{loop.pk}"' in html
    assert 'name="post" value="yes"' in html and 'name="action" value="stop_human_loops"' in html
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"][:2]} == {"InProgress"}  # nothing reached A2I

    # Confirmed without a reason: the page again, with the error; still nothing done.
    page = client.post(CHANGELIST, confirm_post("stop_human_loops", selection, reason="  "))
    assert page.status_code == 200
    assert "Give a reason" in page.content.decode()
    assert LoopActionBatch.objects.count() == 0
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"][:2]} == {"InProgress"}

    response = client.post(CHANGELIST, confirm_post("stop_human_loops", selection, reason="bad input data"), follow=True)

    assert response.redirect_chain[-1][0].startswith(CHANGELIST)
    assert {a2i_status(aws, n) for n in a2i_world["in_progress"][:2]} <= {"Stopping", "Stopped"}
    assert a2i_status(aws, a2i_world["completed"][0]) == "Completed"
    batch = LoopActionBatch.objects.get()
    assert (batch.user, batch.action, batch.reason, batch.state) == (operator, "stop", "bad input data", "done")
    assert batch.summary == "2 stopped, 1 skipped (not InProgress)"
    assert batch.summary in response.content.decode()
    assert set(LoopAction.objects.values_list("reason", flat=True)) == {"bad input data"}


def test_the_admin_delete_action_deletes_in_a2i_and_keeps_the_rows(aws, a2i_world, operator):
    client = logged_in(operator)
    selection = loops_named(a2i_world["completed"])

    client.post(CHANGELIST, confirm_post("delete_human_loops", selection, reason="cleanup"))

    assert {a2i_status(aws, n) for n in a2i_world["completed"]} == {None}
    assert all(loop.deleted_upstream for loop in loops_named(a2i_world["completed"]))


def test_the_admin_stop_then_delete_action_runs_in_the_background(aws, a2i_world, operator, django_capture_on_commit_callbacks):
    client = logged_in(operator)
    selection = loops_named(a2i_world["in_progress"][:1])

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(CHANGELIST, confirm_post("stop_and_delete_human_loops", selection, reason="wrong flow"))

    batch = LoopActionBatch.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("actions:batch", args=[batch.pk])
    assert len(callbacks) == 1
    actions.execute_batch(batch.pk)  # what the worker does
    assert a2i_status(aws, a2i_world["in_progress"][0]) is None
    assert LoopAction.objects.get().detail == "stopped, then deleted"


def test_select_across_acts_on_every_matching_loop_after_confirmation(aws, a2i_world, operator):
    client = logged_in(operator)
    one = loops_named(a2i_world["in_progress"][:1])
    url = f"{CHANGELIST}?status__exact=InProgress"

    page = client.post(url, action_post("stop_human_loops", one, select_across="1"))
    html = page.content.decode()
    assert "3</strong> of the 3 selected loops" in html
    assert 'name="select_across" value="1"' in html

    client.post(url, confirm_post("stop_human_loops", one, select_across="1", reason="all of them"))

    assert {a2i_status(aws, n) for n in a2i_world["in_progress"]} <= {"Stopping", "Stopped"}
    assert LoopActionBatch.objects.get().total == 3


def test_more_than_twenty_loops_in_the_admin_go_to_the_progress_page(aws, flow_definition, operator, django_capture_on_commit_callbacks):
    names = start_loops(aws, flow_definition, 21, prefix="many")
    sync(flow_definition)
    client = logged_in(operator)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(CHANGELIST, confirm_post("stop_human_loops", loops_named(names), reason="bulk"))

    batch = LoopActionBatch.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("actions:batch", args=[batch.pk])
    assert batch.state == "pending" and batch.total == 21
    assert len(callbacks) == 1  # the task is sent after commit (not executed here: no worker in this test)
    assert {a2i_status(aws, n) for n in names} == {"InProgress"}


def test_a_viewer_is_not_offered_the_actions_and_a_forged_post_is_refused(aws, a2i_world, viewer):
    client = logged_in(viewer, enforce_csrf_checks=True)
    page = client.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("stop_human_loops", "delete_human_loops", "stop_and_delete_human_loops", "delete_selected"):
        assert f'value="{name}"' not in html
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else client.cookies["csrftoken"].value
    selection = loops_named(a2i_world["in_progress"] + a2i_world["completed"])

    for action in ("stop_human_loops", "delete_human_loops", "stop_and_delete_human_loops"):
        forged = client.post(CHANGELIST, {**confirm_post(action, selection, reason="forged"), "csrfmiddlewaretoken": token})
        assert forged.status_code == 403, action
        forged = client.post(CHANGELIST, {**action_post(action, selection), "csrfmiddlewaretoken": token})
        assert forged.status_code == 403, action

    assert {a2i_status(aws, n) for n in a2i_world["in_progress"]} == {"InProgress"}
    assert {a2i_status(aws, n) for n in a2i_world["completed"]} == {"Completed"}
    assert LoopActionBatch.objects.count() == 0 and LoopAction.objects.count() == 0


def test_an_operator_with_only_stop_is_offered_only_stop(a2i_world, viewer):
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="stop_humanloop"))
    html = logged_in(viewer).get(CHANGELIST).content.decode()
    assert 'value="stop_human_loops"' in html
    assert 'value="delete_human_loops"' not in html and 'value="stop_and_delete_human_loops"' not in html


def test_loops_are_read_only_and_never_deleted_locally(a2i_world, superuser):
    client = logged_in(superuser)
    loop = HumanLoop.objects.get(name=a2i_world["in_progress"][0])
    html = client.get(CHANGELIST).content.decode()
    assert 'value="delete_selected"' not in html
    assert 'value="stop_human_loops"' in html
    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{loop.pk}/delete/").status_code == 403
    change = client.get(f"{CHANGELIST}{loop.pk}/change/")
    assert change.status_code == 200
    assert 'name="status"' not in change.content.decode()  # shown, not editable
    response = client.post(f"{CHANGELIST}{loop.pk}/change/", {"status": "Completed"})
    assert response.status_code == 403
    loop.refresh_from_db()
    assert loop.status == "InProgress"


@pytest.mark.parametrize(
    "model", ["flowdefinition", "humanloop", "humanloopstatuschange", "syncrun", "loopactionbatch", "loopaction", "workerheartbeat"]
)
def test_no_local_add_for_any_model(superuser, model):
    response = logged_in(superuser).get(f"/admin/loops/{model}/add/")
    assert response.status_code in (403, 404)  # 404: not registered on its own (an inline)


def test_the_audit_log_is_read_only_and_exports_csv(aws, a2i_world, operator, superuser):
    selected = loops_named(a2i_world["in_progress"][:1])
    logged_in(operator).post(CHANGELIST, confirm_post("stop_human_loops", selected, reason='why, "quoted"'))
    row = LoopAction.objects.get()
    client = logged_in(superuser)
    assert client.get(f"/admin/loops/loopaction/{row.pk}/delete/").status_code == 403
    assert client.post(f"/admin/loops/loopaction/{row.pk}/change/", {"outcome": "failed"}).status_code == 403

    response = client.post("/admin/loops/loopaction/", {"action": "export_as_csv", "_selected_action": [row.pk], "index": "0"})

    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0].startswith("created_at,finished_at,user,loop,")
    assert len(lines) == 2
    assert a2i_world["in_progress"][0] in lines[1] and 'olivia-operator' in lines[1] and '"why, ""quoted"""' in lines[1]


def test_admin_changelists_render(a2i_world, superuser):
    client = logged_in(superuser)
    for model in ("flowdefinition", "humanloop", "syncrun", "loopactionbatch", "loopaction", "workerheartbeat"):
        assert client.get(f"/admin/loops/{model}/").status_code == 200, model
    loop = HumanLoop.objects.first()
    assert client.get(f"/admin/loops/humanloop/?q={loop.name}").content.decode().count(loop.name) >= 1


def test_the_loop_changelist_filters_by_status_and_failure_code(a2i_world, superuser):
    client = logged_in(superuser)
    html = client.get(CHANGELIST, {"failure_code": "ValidationError"}).content.decode()
    assert a2i_world["failed"][0] in html and a2i_world["completed"][0] not in html
    html = client.get(CHANGELIST, {"status__exact": "Completed"}).content.decode()
    assert all(name in html for name in a2i_world["completed"]) and a2i_world["in_progress"][0] not in html
