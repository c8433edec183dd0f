"""The loop page: fields, timeline, answers read from S3, refresh from A2I, clear errors."""

import pytest

from loops.models import HumanLoop
from tests.conftest import ANSWER, XSS, completed_loop_via_a2i

pytestmark = pytest.mark.django_db(transaction=False)


def test_loop_page_shows_every_field_and_the_timeline(viewer_client, world):
    response = viewer_client.get(f"/loops/{world.inv_new.pk}/")
    content = response.content.decode()
    loop = world.inv_new
    assert response.status_code == 200
    for text in (loop.name, loop.arn, loop.output_s3_uri, world.fd_inv.arn, "InProgress"):
        assert text in content
    assert "Answers exist once the loop is Completed" in content


def test_timeline_lists_observed_transitions(viewer_client, world, monkeypatch):
    # inv-done's output cannot be read here (no S3 configured): make the URI malformed so the
    # page says so without touching the network.
    HumanLoop.objects.filter(pk=world.inv_done.pk).update(output_s3_uri="not-an-s3-uri")
    content = viewer_client.get(f"/loops/{world.inv_done.pk}/").content.decode()
    assert "first seen as InProgress" in content
    assert "InProgress → Completed" in content
    assert content.index("first seen as InProgress") < content.index("InProgress → Completed")
    assert "The output cannot be read." in content and "Not an S3 object URI" in content


def test_answers_come_from_output_json_in_s3(viewer_client, aws):
    loop = completed_loop_via_a2i(aws)
    response = viewer_client.get(f"/loops/{loop.pk}/")
    content = response.content.decode()
    assert response.status_code == 200
    output = response.context["output"]
    assert [a.worker_id for a in output.answers] == ["worker-7"]
    answer = output.answers[0]
    assert answer.time_spent_seconds == 42.5
    assert dict((k, v) for k, v, _ in answer.fields) == ANSWER
    assert 'Worker <a href="/reviewers/worker-7/">worker-7</a>' in content and "spent 42 s" in content
    assert "invoice" in content and "0.93" in content
    assert "s3://docs/invoice-17.pdf" in content  # the input content, next to the answers
    assert "&quot;currency&quot;: &quot;EUR&quot;" in content  # nested answer parts as pretty JSON


def test_missing_output_object_is_a_clear_message(viewer_client, aws):
    loop = completed_loop_via_a2i(aws)
    bucket_and_key = loop.output_s3_uri[len("s3://"):]
    bucket, key = bucket_and_key.split("/", 1)
    aws.client("s3").delete_object(Bucket=bucket, Key=key)
    content = viewer_client.get(f"/loops/{loop.pk}/").content.decode()
    assert "The output cannot be read." in content
    assert "does not exist" in content


def test_refresh_from_a2i_applies_the_new_status(viewer_client, aws):
    from loops.services.discovery import discover_flow_definitions
    from loops.services.sync import sync_flow_definition

    arn = aws.create_flow_definition("refresh-fd")
    aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName="refresh-me", FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"}
    )
    (fd,) = [fd for fd in discover_flow_definitions([aws.region]) if fd.arn == arn]
    sync_flow_definition(fd.pk, full=True)
    loop = HumanLoop.objects.get(name="refresh-me")
    assert loop.status == "InProgress"
    aws.complete("refresh-me", answer={"ok": True})
    response = viewer_client.post(f"/loops/{loop.pk}/refresh/", follow=True)
    assert response.status_code == 200
    assert "Refreshed from A2I: now Completed." in response.content.decode()
    loop.refresh_from_db()
    fd.refresh_from_db()
    assert loop.status == "Completed"
    assert fd.stats["status_counts"] == {"Completed": 1}


def test_refresh_of_a_loop_gone_upstream_marks_it_deleted(viewer_client, aws):
    loop = completed_loop_via_a2i(aws, loop_name="gone-soon")
    aws.client("sagemaker-a2i-runtime").delete_human_loop(HumanLoopName="gone-soon")
    response = viewer_client.post(f"/loops/{loop.pk}/refresh/", follow=True)
    assert "(deleted upstream)" in response.content.decode()
    loop.refresh_from_db()
    assert loop.deleted_upstream is True


def test_refresh_when_a2i_is_unreachable_is_a_message_not_a_500(viewer_client, world, monkeypatch, settings):
    from loops import a2i as a2i_api

    # A closed port on localhost: a real connection refusal.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings.A2I_MAX_ATTEMPTS = 1
    settings.A2I_CONNECT_TIMEOUT = 2
    a2i_api.reset_clients()
    try:
        response = viewer_client.post(f"/loops/{world.inv_new.pk}/refresh/", follow=True)
    finally:
        a2i_api.reset_clients()
    assert response.status_code == 200
    assert "A2I is unreachable" in response.content.decode()
    world.inv_new.refresh_from_db()
    assert world.inv_new.status == "InProgress"


def test_user_and_a2i_strings_are_escaped_everywhere(viewer_client, world):
    from loops.models import FlowDefinition
    from loops.services.stats import refresh_flow_definition_stats

    HumanLoop.objects.filter(pk=world.inv_fail.pk).update(failure_code=XSS)
    FlowDefinition.objects.filter(pk=world.fd_inv_eu.pk).update(last_sync_error=XSS)
    refresh_flow_definition_stats(world.fd_inv)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for url in ("/loops/", f"/loops/{world.inv_fail.pk}/", "/", "/loops/?name=<script>alert(1)</script>"):
        content = viewer_client.get(url).content.decode()
        assert XSS not in content, url
        assert escaped in content, url


def test_timeline_begins_with_a_first_sight_that_has_no_row(viewer_client, world):
    # A sync's first sight of a loop writes no history row: the page rebuilds it from the loop.
    assert not world.inv_new.status_changes.exists()
    content = viewer_client.get(f"/loops/{world.inv_new.pk}/").content.decode()
    assert "first seen as InProgress" in content
