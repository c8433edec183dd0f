"""The loop list's new GET parameters: `reviewer` (loops answered by a worker) and `agreement`
(agree, disagree); bad values are a form error, never a 500; every other parameter still works."""

import pytest

from tests.conftest import names

pytestmark = pytest.mark.django_db


def test_reviewer_selects_the_loops_a_worker_answered(viewer_client, answer_world):
    assert names(viewer_client.get("/loops/", {"reviewer": "alice"})) == ["a1", "a2", "a3"]
    assert names(viewer_client.get("/loops/", {"reviewer": "carol"})) == ["b1"]
    response = viewer_client.get("/loops/", {"reviewer": "nobody"})
    assert names(response) == []
    assert "the reviewer filter excludes them all" in response.content.decode()


def test_agreement_selects_loops_whose_answers_agree_or_not(viewer_client, answer_world):
    assert names(viewer_client.get("/loops/", {"agreement": "agree"})) == ["a1"]
    assert names(viewer_client.get("/loops/", {"agreement": "disagree"})) == ["a2"]


def test_the_new_filters_combine_with_the_existing_ones(viewer_client, answer_world):
    assert names(viewer_client.get("/loops/", {"reviewer": "bob", "agreement": "disagree"})) == ["a2"]
    assert names(viewer_client.get("/loops/", {"reviewer": "alice", "window": "24h"})) == ["a1", "a2"]
    assert names(viewer_client.get("/loops/", {"reviewer": "alice", "flow_definition": "reviews-b"})) == []
    assert names(viewer_client.get("/loops/", {"reviewer": "alice", "sort": "name", "status": "Completed"})) == ["a1", "a2", "a3"]


def test_the_export_follows_the_new_filters(viewer_client, answer_world):
    response = viewer_client.get("/loops/", {"reviewer": "bob", "_export": "csv"})
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["a1", "a2"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"agreement": "maybe"}, "agreement"),
        ({"agreement": "AGREE"}, "agreement"),
        ({"reviewer": "w" * 257}, "reviewer"),
        ({"reviewer": "a\x00b"}, "reviewer"),
    ],
)
def test_bad_values_are_a_form_error_never_a_500(viewer_client, answer_world, params, field):
    response = viewer_client.get("/loops/", params)
    assert response.status_code == 200
    assert response.context["invalid"] is True
    assert field in response.context["filter"].form.errors
    assert viewer_client.get("/loops/", {**params, "_export": "json"}).status_code == 400


def test_the_form_offers_both_filters(viewer_client, answer_world):
    content = viewer_client.get("/loops/", {"reviewer": "alice", "agreement": "disagree"}).content.decode()
    assert 'name="reviewer"' in content and 'value="alice"' in content
    assert '<option value="disagree" selected>' in content


def test_a_bulk_action_on_all_matching_loops_uses_the_new_filters(client, answer_world):
    from loops.forms import LoopSelectionForm
    from tests.conftest import make_user

    client.force_login(make_user("op", group="operator"))
    form = LoopSelectionForm({"action": "stop", "select_all": "1", "filters": "reviewer=bob&agreement=agree"})
    assert form.is_valid()
    assert [loop.name for loop in form.resolve_loops()] == ["a1"]
