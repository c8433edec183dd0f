"""Large "all matching" selections are prepared by the worker: the request records the
selection only, and the progress page says "preparing" until the loops are selected."""

import pytest
from django.test import Client

from loops import tasks
from loops.models import LoopAction, LoopActionBatch
from tests.conftest import a2i_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(operator):
    client = Client()
    client.force_login(operator)
    return client


def confirm_and_execute(client, filters):
    confirm = client.post("/actions/confirm/", {"action": "stop", "select_all": "1", "filters": filters})
    upto = confirm.context["form"].initial["upto"]
    return client.post(
        "/actions/execute/", {"action": "stop", "select_all": "1", "filters": filters, "upto": upto, "reason": "all"}, follow=True
    )


def test_a_selection_above_the_threshold_is_left_for_the_worker_and_shows_preparing(
    aws, a2i_world, operator_client, settings, django_capture_on_commit_callbacks
):
    settings.A2I_BULK_ACTION_THRESHOLD = 2
    filters = f"flow_definition={a2i_world['fd'].arn}&status=InProgress"

    with django_capture_on_commit_callbacks() as callbacks:
        response = confirm_and_execute(operator_client, filters)

    batch = LoopActionBatch.objects.get()
    assert batch.state == "preparing" and batch.total == 0
    assert not LoopAction.objects.exists()  # no row written in the request
    assert batch.selection["filters"] == filters
    html = response.content.decode()
    assert "being prepared by a worker" in html and "<strong>Preparing</strong>" in html
    assert len(callbacks) == 1

    tasks.execute_loop_action_batch(batch.pk)  # what the worker runs

    batch.refresh_from_db()
    assert (batch.state, batch.total, batch.summary) == ("done", 3, "3 stopped")
    assert {a2i_status(aws, name) for name in a2i_world["in_progress"]} <= {"Stopping", "Stopped"}
    assert "3 stopped" in operator_client.get(f"/actions/batches/{batch.pk}/").content.decode()


def test_a_small_selection_is_still_recorded_and_run_in_the_request(aws, a2i_world, operator_client):
    filters = f"flow_definition={a2i_world['fd'].arn}&status=InProgress"
    response = confirm_and_execute(operator_client, filters)
    batch = LoopActionBatch.objects.get()
    assert (batch.state, batch.summary) == ("done", "3 stopped")
    assert '<li class="success">3 stopped</li>' in response.content.decode()


def test_a_prepared_batch_respects_upto_and_a_revoked_permission(aws, a2i_world, operator, settings):
    from loops.services import actions

    batch = actions.create_prepared_batch(operator, "stop", "r", filters=f"flow_definition={a2i_world['fd'].arn}", upto=0)
    assert actions.prepare_batch(batch.pk).summary == "nothing to do: no loop matches the filters any more"

    batch = actions.create_prepared_batch(operator, "stop", "r", filters="", upto=10**9)
    operator.groups.clear()
    operator = type(operator).objects.get(pk=operator.pk)
    prepared = actions.prepare_batch(batch.pk)
    assert prepared.state == "done" and prepared.summary.startswith("not run:")
    assert actions.batch_level(prepared) == "error"
