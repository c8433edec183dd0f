"""API tokens: shown once, stored hashed, accepted on /metrics and the loop list's export only,
refused for stop/delete and after revocation."""

import json

import pytest
from django.db import connection
from django.test import Client

from loops.models import ApiToken, LoopActionBatch
from loops.services import tokens


@pytest.fixture
def token(operator):
    """An operator's token: even a role that may stop and delete reads only through a token."""
    _row, value = tokens.create_token(operator, "script")
    return value


def bearer(value):
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def test_the_page_shows_a_new_token_once_and_stores_only_its_hash(viewer):
    client = Client()
    client.force_login(viewer)
    response = client.post("/tokens/", {"name": "grafana"})
    value = response.context["created"]
    assert value.startswith("a2i_") and len(value) > 40
    assert value in response.content.decode() and response["Cache-Control"] == "no-store"
    assert value not in client.get("/tokens/").content.decode()  # never shown again

    row = ApiToken.objects.get(user=viewer)
    assert row.digest == tokens.digest(value) and value not in (row.digest, row.prefix, row.name)
    # Not in clear anywhere in the table.
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM loops_apitoken")
        assert not any(value in str(column) for row_values in cursor.fetchall() for column in row_values)


def test_a_token_reads_the_loop_list_export_as_json_and_csv(world, token):
    client = Client()
    response = client.get("/loops/?_export=json&flow_definition=invoices&status=InProgress", **bearer(token))
    assert response.status_code == 200
    names = {row["Name"] for row in json.loads(b"".join(response.streaming_content))}
    assert names == {"inv-new", "inv-old", "inv-eu"}
    csv = client.get("/loops/?_export=csv&status=Failed", **bearer(token))
    assert csv.status_code == 200 and b"inv-fail" in b"".join(csv.streaming_content)
    assert "sessionid" not in csv.cookies  # no session is created


def test_a_token_is_not_a_login_for_the_pages(world, token):
    client = Client()
    # The list page itself, and every other page, still need a session.
    for url in ("/loops/", "/", "/alerts/", f"/loops/{world.inv_new.pk}/"):
        response = client.get(url, **bearer(token))
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


def test_a_token_never_stops_or_deletes(world, token):
    client = Client(enforce_csrf_checks=True)
    for action in ("stop", "delete"):
        response = client.post("/actions/execute/", {"action": action, "loop": [world.inv_new.pk], "reason": "script"}, **bearer(token))
        assert response.status_code in (302, 403) and "/actions/batches/" not in response.get("Location", "")
        response = client.post("/actions/confirm/", {"action": action, "loop": [world.inv_new.pk]}, **bearer(token))
        assert response.status_code in (302, 403)
        # Not even a GET with the export parameter reaches anything but the loop list.
        url = f"/actions/confirm/?action={action}&loop={world.inv_new.pk}&_export=csv"
        assert client.get(url, **bearer(token)).status_code in (302, 403, 405)
    assert LoopActionBatch.objects.count() == 0
    world.inv_new.refresh_from_db()
    assert world.inv_new.status == "InProgress"


def test_a_revoked_token_is_refused(world, operator, token):
    client = Client()
    assert client.get("/metrics", **bearer(token)).status_code == 200
    owner = Client()
    owner.force_login(operator)
    row = ApiToken.objects.get(user=operator)
    owner.post(f"/tokens/{row.pk}/revoke/")
    assert client.get("/metrics", **bearer(token)).status_code == 401
    assert client.get("/loops/?_export=csv", **bearer(token)).status_code == 401


def test_someone_elses_token_cannot_be_revoked(viewer, token):
    client = Client()
    client.force_login(viewer)
    row = ApiToken.objects.get()
    response = client.post(f"/tokens/{row.pk}/revoke/", follow=True)
    assert "No such active token of yours." in response.content.decode()
    row.refresh_from_db()
    assert row.is_active


def test_malformed_or_unknown_tokens_are_401(world):
    client = Client()
    for header in ("Bearer ", "Bearer nope", "Basic YTpi", "Bearer a2i_unknown"):
        response = client.get("/loops/?_export=csv", HTTP_AUTHORIZATION=header)
        # A header that is not a bearer token of ours goes the session way (login redirect).
        assert response.status_code in (302, 401), header


def test_a_user_without_a_role_gets_403_with_a_token(world, django_user_model):
    nobody = django_user_model.objects.create_user("nobody", password="x")
    _row, value = tokens.create_token(nobody, "x")
    assert Client().get("/loops/?_export=csv", **bearer(value)).status_code == 403
