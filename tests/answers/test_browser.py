"""The reviewers' side in headless Chromium: the reviewers page, a worker's page, and a loop in
disagreement reached from its flow definition, with screenshots the CI prints.

Everything is real: loops completed in A2I Local with two reviewers each (output.json in
moto's S3), synced and ingested into PostgreSQL by the services, Django's live server.
"""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop, WorkerHeartbeat
from loops.services.answers import ingest_due_answers
from loops.services.discovery import discover_flow_definitions
from loops.services.reviewers import refresh_reviewer_stats
from loops.services.stats import refresh_flow_definition_stats
from tests.conftest import PASSWORD, make_user, requires_postgresql, save_screenshot, sync

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), requires_postgresql]


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.fixture
def reviewed_world(aws):
    """`two-reviewers` (TaskCount 2): 8 loops answered by ann, ben and cy; photo-5 in disagreement."""
    arn = aws.create_flow_definition("two-reviewers", task_count=2)
    runtime = aws.client("sagemaker-a2i-runtime")
    for n in range(8):
        runtime.start_human_loop(HumanLoopName=f"photo-{n}", FlowDefinitionArn=arn,
                                 HumanLoopInput={"InputContent": json.dumps({"image": f"s3://photos/{n}.jpg"})})
    discover_flow_definitions([aws.region])
    fd = FlowDefinition.objects.get(arn=arn)
    sync(fd)
    pairs = [("ann", "ben"), ("ann", "cy"), ("ben", "cy"), ("ann", "ben"), ("ann", "cy"), ("ann", "ben"), ("ben", "cy"), ("ann", "cy")]
    for n, (first, second) in enumerate(pairs):
        created = HumanLoop.objects.get(name=f"photo-{n}").creation_time
        label = "cat" if n % 2 else "dog"
        second_answer = {"label": "bird" if n == 5 else label, "box": [10, 20, 30, 40]}
        aws.complete(f"photo-{n}", human_answers=[
            {"answerContent": {"label": label, "box": [10, 20, 30, 40]}, "workerId": first, "timeSpentInSeconds": 30 + 10 * n,
             "acceptanceTime": iso(created + timedelta(seconds=60)), "submissionTime": iso(created + timedelta(seconds=90 + 10 * n))},
            {"answerContent": second_answer, "workerId": second, "timeSpentInSeconds": 50 + 20 * n,
             "acceptanceTime": iso(created + timedelta(seconds=120)), "submissionTime": iso(created + timedelta(seconds=170 + 20 * n))},
        ])
    sync(fd)
    report = ingest_due_answers()
    assert report.ingested == 8, report.summary()
    refresh_flow_definition_stats(fd)
    refresh_reviewer_stats()
    WorkerHeartbeat.objects.create(worker="celery@browser-test", last_beat_at=timezone.now())
    make_user("vera", group="viewer")
    return fd


def test_reviewers_page_worker_page_and_a_loop_in_disagreement(page, live_server, reviewed_world, screenshot_dir):
    fd = reviewed_world
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_server.url}/")

    page.get_by_role("link", name="Reviewers", exact=True).click()
    page.wait_for_url(f"{live_server.url}/reviewers/")
    rows = page.locator("table.reviewers tbody tr")
    assert rows.count() == 3
    assert rows.locator("td").first.inner_text() == "ann"  # most answers first: ann 6, ben 5, cy 5
    assert "16 answers" in page.locator(".count").inner_text()
    save_screenshot(page, screenshot_dir, "reviewers")

    # Sort by median time on task through the column header.
    page.get_by_role("link", name="Median time on task").click()
    page.wait_for_url("**/reviewers/?sort=time_median")
    assert page.locator("table.reviewers tbody tr td:first-child").all_inner_texts()[0] == "ann"

    page.get_by_role("link", name="ben", exact=True).click()
    page.wait_for_url("**/reviewers/ben/**")
    assert page.locator("h1").inner_text() == "Worker ben"
    assert page.locator(".day-chart svg rect.seg.answers").count() >= 1
    assert page.locator(".day-chart svg polyline.time-line").count() == 1
    assert page.locator("table.answers-table tbody tr").count() == 5
    assert page.locator("table.answers-table .badge.disagree").count() == 1
    save_screenshot(page, screenshot_dir, "reviewer-ben")

    # From the flow definition page, the loops in disagreement, then the loop itself.
    page.goto(f"{live_server.url}/flow-definitions/{fd.pk}/")
    assert "87.5 % of 8 loops with several answers" in page.locator("body").inner_text()
    page.get_by_role("link", name="1 in disagreement").click()
    page.wait_for_url("**/loops/?**agreement=disagree**")
    assert page.locator("table.loops td.col-name").all_inner_texts() == ["photo-5"]
    page.get_by_role("link", name="photo-5").click()
    page.wait_for_url("**/loops/*/")
    comparison = page.locator("section.comparison")
    assert "the reviewers disagree" in comparison.inner_text()
    differing = comparison.locator("tr.differs")
    assert differing.count() == 1 and "label" in differing.inner_text() and "bird" in differing.inner_text()
    assert comparison.locator("tr.same").count() == 4  # box[0..3]
    assert "Review time (exact)" in page.locator("dl.fields").first.inner_text()
    save_screenshot(page, screenshot_dir, "loop-disagreement")
