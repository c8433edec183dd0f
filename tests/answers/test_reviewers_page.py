"""/reviewers/ and /reviewers/<worker id>/: per-worker figures checked against known answers,
precomputed or computed on request alike, sortable, exportable, bad input never a 500."""

import csv
import io
import json
from datetime import timedelta

import pytest

from loops.models import HumanAnswer, ReviewerStats
from loops.services.reviewers import refresh_reviewer_stats
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def rows_of(response) -> dict:
    return {row.record.worker_id: row.record for row in response.context["table"].rows}


def active_days(worker) -> int:
    return len({t.date() for t in HumanAnswer.objects.filter(worker_id=worker).values_list("submission_time", flat=True)})


def check_all_time_figures(rows):
    alice, bob, carol = rows["alice"], rows["bob"], rows["carol"]
    assert (alice.answers, alice.loops, bob.answers, carol.answers) == (3, 3, 2, 1)
    assert alice.time_median == pytest.approx(60) and alice.time_p90 == pytest.approx(252)
    assert alice.wait_median == pytest.approx(600)
    assert bob.time_median == pytest.approx(105) and bob.time_p90 == pytest.approx(117) and bob.wait_median == pytest.approx(1800)
    assert carol.time_median == pytest.approx(10) and carol.wait_median == pytest.approx(60)
    assert (alice.share, bob.share, carol.share) == pytest.approx((3 / 6, 2 / 6, 1 / 6))
    assert (alice.pairs_compared, alice.pairs_agreeing, alice.agreement) == (2, 1, 0.5)
    assert (carol.pairs_compared, carol.agreement) == (0, None)
    assert alice.active_days == active_days("alice")
    assert alice.loops_per_day == pytest.approx(3 / active_days("alice"))


def test_precomputed_figures_match_the_known_answers(viewer_client, answer_world):
    refresh_reviewer_stats()
    response = viewer_client.get("/reviewers/")
    assert response.status_code == 200
    assert response.context["result"].precomputed is True
    check_all_time_figures(rows_of(response))
    content = response.content.decode()
    assert "3 workers, 6 answers" in content
    assert 'href="/reviewers/alice/"' in content
    assert 'href="/loops/?reviewer=alice"' in content  # their loops, in the loop list


def test_figures_computed_on_request_are_the_same(viewer_client, answer_world):
    assert not ReviewerStats.objects.exists()
    response = viewer_client.get("/reviewers/")
    assert response.context["result"].precomputed is False
    check_all_time_figures(rows_of(response))
    # A custom range is always computed on request.
    refresh_reviewer_stats()
    response = viewer_client.get("/reviewers/", {"created_after": "2000-01-01T00:00:00"})
    assert response.context["result"].precomputed is False
    check_all_time_figures(rows_of(response))


@pytest.mark.parametrize("precompute", [True, False])
def test_the_window_and_flow_definition_filters_select_answers_by_their_loop(viewer_client, answer_world, precompute):
    if precompute:
        refresh_reviewer_stats()
    rows = rows_of(viewer_client.get("/reviewers/", {"window": "24h"}))
    assert set(rows) == {"alice", "bob", "carol"}
    assert rows["alice"].answers == 2 and rows["alice"].time_median == pytest.approx(45)  # a3 is 10 days old
    assert rows["alice"].share == pytest.approx(2 / 5)
    rows = rows_of(viewer_client.get("/reviewers/", {"flow_definition": answer_world.fd_b.arn}))
    assert set(rows) == {"carol"} and rows["carol"].share == 1.0
    rows = rows_of(viewer_client.get("/reviewers/", {"flow_definition": answer_world.fd_a.arn, "window": "7d"}))
    assert {k: r.answers for k, r in rows.items()} == {"alice": 2, "bob": 2}


def test_columns_sort_and_a_bad_sort_is_reported(viewer_client, answer_world):
    order = lambda response: [row.record.worker_id for row in response.context["table"].rows]  # noqa: E731
    assert order(viewer_client.get("/reviewers/")) == ["alice", "bob", "carol"]  # most answers first
    assert order(viewer_client.get("/reviewers/", {"sort": "time_median"})) == ["carol", "alice", "bob"]
    assert order(viewer_client.get("/reviewers/", {"sort": "-wait_median"})) == ["bob", "alice", "carol"]
    assert order(viewer_client.get("/reviewers/", {"sort": "agreement"}))[-1] in ("alice", "bob")
    response = viewer_client.get("/reviewers/", {"sort": "password"})
    assert response.status_code == 200 and "Cannot sort by" in response.content.decode()


def test_export_as_csv_and_json_in_the_table_order(viewer_client, answer_world):
    response = viewer_client.get("/reviewers/", {"_export": "csv", "sort": "worker_id"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="reviewers-')
    table = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert table[0][:3] == ["Worker id", "Answers", "Loops"]
    assert [row[0] for row in table[1:]] == ["alice", "bob", "carol"]
    assert table[1][1:3] == ["3", "3"] and table[1][5] == "60.0" and table[1][-1] == "0.5"

    response = viewer_client.get("/reviewers/", {"_export": "json", "window": "24h"})
    data = json.loads(b"".join(response.streaming_content))
    assert {row["Worker id"]: row["Answers"] for row in data} == {"alice": 2, "bob": 2, "carol": 1}


@pytest.mark.parametrize(
    "params",
    [
        {"window": "forever"},
        {"created_after": "yesterday"},
        {"created_after": "0001-01-01T00:00:00+01:00"},
        {"created_before": "9999-12-31T23:59:59-01:00"},
        {"created_after": "2026-01-02T00:00:00", "created_before": "2026-01-01T00:00:00"},
        {"flow_definition": "no-such-flow"},
    ],
)
def test_bad_filters_are_a_form_error_never_a_500(viewer_client, answer_world, params):
    response = viewer_client.get("/reviewers/", params)
    assert response.status_code == 200
    assert response.context["invalid"] is True
    assert "Some filters are not valid" in response.content.decode()
    assert viewer_client.get("/reviewers/", {**params, "_export": "csv"}).status_code == 400
    assert viewer_client.get("/reviewers/alice/", params).status_code == 200


def test_an_unknown_export_type_is_refused(viewer_client, answer_world):
    response = viewer_client.get("/reviewers/", {"_export": "xlsx"})
    assert response.status_code == 400 and "csv or json" in response.content.decode()


def test_the_worker_page_shows_their_figures_recent_answers_and_a_chart(viewer_client, answer_world):
    response = viewer_client.get("/reviewers/alice/")
    assert response.status_code == 200
    page = response.context["worker"]
    assert page.summary.answers == 3 and page.summary.time_median == pytest.approx(60)
    assert [a.loop.name for a in page.recent] == ["a1", "a2", "a3"]  # newest loops first
    assert len(page.days) == 30 and sum(day.answers for day in page.days) == 3
    chart = response.context["chart"]
    assert chart["total"] == 3 and len(chart["bars"]) == 30 and chart["points"]
    content = response.content.decode()
    for loop in (answer_world.a1, answer_world.a2, answer_world.a3):
        assert f'href="/loops/{loop.pk}/"' in content
    assert "disagrees" in content and "agrees" in content
    assert "<script" not in content.split("</main>")[0] and 'style="' not in content

    # The filters apply here too.
    page = viewer_client.get("/reviewers/alice/", {"window": "24h"}).context["worker"]
    assert page.summary.answers == 2 and [a.loop.name for a in page.recent] == ["a1", "a2"]


def test_an_unknown_worker_is_a_404_and_odd_worker_ids_round_trip(viewer_client, answer_world):
    from .conftest import add_answer

    assert viewer_client.get("/reviewers/nobody/").status_code == 404
    # Ids no answer can have (the parser refuses them): a 404, not a database error.
    for hostile in ("a%00b", "w" * 70_000, "%C0%AF"):
        assert viewer_client.get(f"/reviewers/{hostile}/").status_code == 404
    odd = "team/α #1?x=<b>"
    add_answer(answer_world.b1, 1, odd, submitted=answer_world.now, spent=5)
    listing = viewer_client.get("/reviewers/").content.decode()
    assert "team/α #1?x=&lt;b&gt;" in listing and "<b>" not in listing.split("<main")[1]
    from django.urls import reverse

    url = reverse("loops:reviewer", args=[odd])
    response = viewer_client.get(url)
    assert response.status_code == 200 and response.context["worker"].worker_id == odd


def test_the_pages_need_the_viewer_role(client, answer_world):
    assert client.get("/reviewers/").status_code == 302  # to the login page
    client.force_login(make_user("nobody"))
    assert client.get("/reviewers/").status_code == 403
    assert client.get("/reviewers/alice/").status_code == 403


def test_the_navigation_links_to_the_reviewers_page(viewer_client, answer_world):
    content = viewer_client.get("/").content.decode()
    assert '<a href="/reviewers/"' in content


def test_pages_say_when_answers_are_waiting_to_be_read(viewer_client, answer_world):
    from loops.models import HumanLoop

    HumanLoop.objects.filter(pk=answer_world.a3.pk).update(answers_state="failed", answers_error="gone")
    content = viewer_client.get("/reviewers/").content.decode()
    # a1, a2, b1 were written straight to the database: still "pending" for the ingestion.
    assert "3 Completed loops waiting" in content and "1 given up" in content


def test_a_refresh_replaces_the_figures_as_a_whole(answer_world):
    first = refresh_reviewer_stats()
    assert first == ReviewerStats.objects.count() > 0
    HumanAnswer.objects.filter(worker_id="carol").delete()
    refresh_reviewer_stats(now=answer_world.now + timedelta(seconds=1))
    assert not ReviewerStats.objects.filter(worker_id="carol").exists()
    # No loop of the last hour has an answer left: that window has no row.
    assert set(ReviewerStats.objects.values_list("window", flat=True)) == {"24h", "7d", "30d", "all"}
