"""The overview and the flow-definition pages use the reviewers' submission times once the
answers are read, and say how many completed loops the figure covers."""

from datetime import timedelta

import pytest

from loops.models import HumanLoop
from loops.services import answers
from loops.services.overview import summarize_flow_definition
from loops.services.stats import refresh_flow_definition_stats
from tests.conftest import start_loops, sync

from .conftest import delete_output

pytestmark = pytest.mark.django_db


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_review_time_percentiles_come_from_submission_times(aws, multi_fd, viewer_client):
    fd = multi_fd
    names = start_loops(aws, fd, 5, prefix="timed")
    sync(fd)
    loops = {loop.name: loop for loop in HumanLoop.objects.filter(flow_definition=fd)}
    # Review times 10, 20, 30, 40 minutes (the last answer of each loop), and a loop whose file is missing.
    for minutes, name in zip((10, 20, 30, 40, 50), names, strict=True):
        created = loops[name].creation_time
        aws.complete(name, human_answers=[
            {"answerContent": {"v": 1}, "workerId": "w1", "submissionTime": iso(created + timedelta(minutes=minutes - 5))},
            {"answerContent": {"v": 1}, "workerId": "w2", "submissionTime": iso(created + timedelta(minutes=minutes))},
        ])
    sync(fd)
    delete_output(aws, HumanLoop.objects.get(name=names[4]))
    answers.ingest_due_answers()
    stats = refresh_flow_definition_stats(fd)["review_seconds"]
    assert stats["source"] == "answers"
    assert (stats["reviewed"], stats["completed"], stats["samples"]) == (4, 5, 4)
    assert stats["median"] == pytest.approx(25 * 60, abs=1)
    assert stats["p90"] == pytest.approx(37 * 60, abs=1)  # 30 + (40 - 30) * 0.7 minutes

    summary = summarize_flow_definition(fd, now=fd.stats_refreshed_at)
    assert (summary.review_source, summary.review_reviewed, summary.review_completed) == ("answers", 4, 5)
    for url in ("/", f"/flow-definitions/{fd.pk}/"):
        content = viewer_client.get(url).content.decode()
        assert "exact, from the reviewers’ submissions: covers 4 of 5 completed loops created in the last 30 days" in content, url


def test_until_answers_are_read_the_observed_figure_is_used_and_labelled(world):
    stats = world.fd_inv.stats["review_seconds"]
    assert stats["source"] == "observed" and stats["reviewed"] == 0 and stats["samples"] == 1
    assert stats["median"] == pytest.approx(3600, abs=1)


def test_the_flow_definition_page_shows_agreement_and_links_the_disagreements(viewer_client, answer_world):
    fd = answer_world.fd_a
    refresh_flow_definition_stats(fd)
    response = viewer_client.get(f"/flow-definitions/{fd.pk}/")
    summary = response.context["summary"]
    assert (summary.agreement_compared, summary.agreement_agree, summary.agreement_rate) == (2, 1, 0.5)
    content = response.content.decode()
    assert "50.0 % of 2 loops with several answers" in content
    assert "agreement=disagree" in content and "1 in disagreement" in content
    # The link leads to exactly the loops in disagreement.
    from urllib.parse import urlencode

    listing = viewer_client.get("/loops/?" + urlencode({"flow_definition": fd.arn, "agreement": "disagree", "window": "30d"}))
    assert [row.record.name for row in listing.context["table"].paginated_rows] == ["a2"]
