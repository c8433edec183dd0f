"""Invalid input: the form with its error and a 200 (400 for exports), never a 500; unknown loop 404."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "query, message",
    [
        ("created_after=yesterday", "Enter a valid date/time."),
        ("created_before=2026-13-45T99:00", "Enter a valid date/time."),
        ("status=Running", "Select a valid choice. Running is not one of the available choices."),
        ("window=2w", "Select a valid choice. 2w is not one of the available choices."),
        ("flow_definition=no-such-flow", "Unknown flow definition no-such-flow"),
        (
            "created_after=2026-01-02T00:00&created_before=2026-01-01T00:00",
            "“Created after” must be earlier than “created before”.",
        ),
        ("name=" + "x" * 64, "Ensure this value has at most 63 characters"),
    ],
)
def test_invalid_filter_shows_the_form_with_its_error(viewer_client, world, query, message):
    response = viewer_client.get("/loops/?" + query)
    assert response.status_code == 200
    content = response.content.decode()
    assert message in content
    assert response.context["table"] is None
    assert "Some filters are not valid" in content
    # The form keeps what the user typed.
    assert 'name="created_after"' in content


@pytest.mark.parametrize(
    "query",
    ["status=Running&_export=csv", "window=2w&_export=json", "created_after=nope&_export=csv", "_export=xlsx", "sort=password&_export=csv"],
)
def test_invalid_export_request_is_a_400(viewer_client, world, query):
    response = viewer_client.get("/loops/?" + query)
    assert response.status_code == 400
    assert response.content.decode().startswith("Export refused:")


@pytest.mark.parametrize("page", ["abc", "0", "-3", "1.5", "99999999999999999999"])
def test_garbage_page_number_is_reported_and_page_one_shown(viewer_client, world, page):
    response = viewer_client.get("/loops/", {"page": page})
    assert response.status_code == 200
    assert response.context["problems"]
    assert "showing page 1" in response.content.decode()
    assert len(response.context["table"].paginated_rows) == 7


def test_page_past_the_end_is_reported(viewer_client, world):
    response = viewer_client.get("/loops/", {"page": "500"})
    assert response.status_code == 200
    assert "past the last page" in response.content.decode()


@pytest.mark.parametrize("sort", ["password", "-arn", "flow_definition__name", "select", "; drop table"])
def test_unknown_sort_key_is_reported_and_default_order_used(viewer_client, world, sort):
    response = viewer_client.get("/loops/", {"sort": sort})
    assert response.status_code == 200
    assert "Cannot sort by" in response.content.decode()
    assert [row.record.name for row in response.context["table"].paginated_rows][0] == "inv-new"


def test_unknown_loop_and_flow_definition_are_404(viewer_client, world):
    assert viewer_client.get("/loops/999999/").status_code == 404
    assert viewer_client.get("/loops/abc/").status_code == 404
    assert viewer_client.post("/loops/999999/refresh/").status_code == 404
    assert viewer_client.get("/flow-definitions/999999/").status_code == 404


def test_refresh_requires_post(viewer_client, world):
    assert viewer_client.get(f"/loops/{world.inv_new.pk}/refresh/").status_code == 405


def test_unknown_chart_mode_falls_back(viewer_client, world):
    response = viewer_client.get("/", {"chart": "<b>"})
    assert response.status_code == 200
    assert response.context["chart"]["mode"] == "24h"
