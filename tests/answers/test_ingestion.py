"""Ingestion reads every Completed loop's output.json through boto3 (A2I Local + moto's S3)
into one row per answer, records unreadable files with their reason, and never repeats itself."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from loops.models import AnswersState, HumanAnswer, HumanLoop
from loops.services import answers
from loops.services.output_json import content_hash
from tests.conftest import start_loops, sync

from .conftest import complete_synced, delete_output, put_output, read_output

pytestmark = pytest.mark.django_db


def parse(ts: str):
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_a_single_answer_is_ingested_field_by_field(aws, flow_definition):
    (loop,) = complete_synced(
        aws, flow_definition,
        [[{"answerContent": {"label": "invoice", "total": 12.5}, "workerId": "worker-7", "timeSpentInSeconds": 42.5}]],
    )
    report = answers.ingest_due_answers()
    assert (report.loops, report.ingested, report.answers, report.failed) == (1, 1, 1, 0)

    (row,) = HumanAnswer.objects.filter(loop=loop)
    (entry,) = read_output(aws, loop)["humanAnswers"]
    assert row.index == 0
    assert row.worker_id == entry["workerId"] == "worker-7"
    assert row.worker_sub == entry["workerMetadata"]["identityData"]["sub"]
    assert row.acceptance_time == parse(entry["acceptanceTime"])
    assert row.submission_time == parse(entry["submissionTime"])
    assert row.time_spent_seconds == entry["timeSpentInSeconds"] == 42.5
    assert row.answer_content == {"label": "invoice", "total": 12.5}
    assert row.content_hash == content_hash({"label": "invoice", "total": 12.5})
    assert (row.content_too_large, row.other_answers, row.agreeing_answers, row.loop_agrees) == (False, 0, 0, None)
    assert row.flow_definition_id == loop.flow_definition_id and row.loop_creation_time == loop.creation_time
    assert row.queue_wait_seconds == pytest.approx((row.acceptance_time - loop.creation_time).total_seconds())

    loop.refresh_from_db()
    assert loop.answers_state == AnswersState.INGESTED and loop.answers_error == "" and loop.answers_attempts == 1
    assert loop.last_submission_time == row.submission_time
    assert loop.review_seconds == pytest.approx((row.submission_time - loop.creation_time).total_seconds())
    assert loop.queue_wait_seconds == pytest.approx(row.queue_wait_seconds)


def test_three_answers_are_ingested_with_their_own_times_and_the_loop_gets_first_and_last(aws, multi_fd):
    created = None
    (loop,) = complete_synced(aws, multi_fd, [[
        {"answerContent": {"label": "cat"}, "workerId": "w-a", "timeSpentInSeconds": 10,
         "acceptanceTime": "2030-01-01T00:00:00Z", "submissionTime": "2030-01-01T00:00:10Z"},
        {"answerContent": {"label": "cat"}, "workerId": "w-b", "timeSpentInSeconds": 20,
         "acceptanceTime": "2030-01-01T00:05:00Z", "submissionTime": "2030-01-01T00:05:20Z"},
        {"answerContent": {"label": "dog"}, "workerId": "w-c", "timeSpentInSeconds": 30,
         "acceptanceTime": "2030-01-01T00:01:00Z", "submissionTime": "2030-01-01T00:09:30.500Z"},
    ]])
    answers.ingest_due_answers()
    rows = list(HumanAnswer.objects.filter(loop=loop).order_by("index"))
    created = loop.creation_time
    assert [(r.index, r.worker_id, r.time_spent_seconds) for r in rows] == [(0, "w-a", 10), (1, "w-b", 20), (2, "w-c", 30)]
    assert [r.submission_time for r in rows] == [parse("2030-01-01T00:00:10Z"), parse("2030-01-01T00:05:20Z"),
                                                 parse("2030-01-01T00:09:30.500Z")]
    assert [r.acceptance_time for r in rows] == [parse("2030-01-01T00:00:00Z"), parse("2030-01-01T00:05:00Z"),
                                                 parse("2030-01-01T00:01:00Z")]
    loop.refresh_from_db()
    assert loop.last_submission_time == parse("2030-01-01T00:09:30.500Z")
    assert loop.review_seconds == pytest.approx((parse("2030-01-01T00:09:30.500Z") - created).total_seconds())
    assert loop.queue_wait_seconds == pytest.approx((parse("2030-01-01T00:00:00Z") - created).total_seconds())


def test_agreement_is_computed_on_known_answers(aws, multi_fd):
    agree, disagree = complete_synced(aws, multi_fd, [
        # Same content, other key order and whitespace: they agree.
        [{"answerContent": {"label": "cat", "box": [1, 2]}, "workerId": "w1"},
         {"answerContent": {"box": [1, 2.0], "label": " cat "}, "workerId": "w2"},
         {"answerContent": {"label": "cat", "box": [1, 2]}, "workerId": "w3"}],
        [{"answerContent": {"label": "cat"}, "workerId": "w1"},
         {"answerContent": {"label": "cat"}, "workerId": "w2"},
         {"answerContent": {"label": "dog"}, "workerId": "w3"}],
    ])
    answers.ingest_due_answers()
    rows = {(r.loop_id, r.worker_id): r for r in HumanAnswer.objects.all()}
    assert {rows[(agree.pk, w)].loop_agrees for w in ("w1", "w2", "w3")} == {True}
    assert [(rows[(agree.pk, w)].other_answers, rows[(agree.pk, w)].agreeing_answers) for w in ("w1", "w2", "w3")] == [(2, 2)] * 3
    assert {rows[(disagree.pk, w)].loop_agrees for w in ("w1", "w2", "w3")} == {False}
    assert [(rows[(disagree.pk, w)].other_answers, rows[(disagree.pk, w)].agreeing_answers) for w in ("w1", "w2", "w3")] == [
        (2, 1), (2, 1), (2, 0)
    ]


def test_unreadable_files_are_recorded_with_their_reason_and_the_rest_of_the_batch_is_ingested(aws, flow_definition, settings):
    settings.A2I_ANSWERS_MAX_BYTES = 1000
    good, missing, not_json, bad_schema, oversized = complete_synced(
        aws, flow_definition, [[{"answerContent": {"label": "cat"}, "workerId": f"w{i}"}] for i in range(5)]
    )
    delete_output(aws, missing)
    put_output(aws, not_json, b'{"humanAnswers": [')
    put_output(aws, bad_schema, json.dumps({"humanAnswers": {"not": "a list"}}).encode())
    document = read_output(aws, oversized)
    document["humanAnswers"][0]["answerContent"] = {"text": "x" * 5000}
    put_output(aws, oversized, json.dumps(document).encode())

    report = answers.ingest_due_answers()
    assert (report.loops, report.ingested, report.failed) == (5, 2, 3)
    assert report.reasons == {"NoSuchKey": 1, "unreadable": 2}

    for loop in (good, missing, not_json, bad_schema, oversized):
        loop.refresh_from_db()
    assert good.answers_state == AnswersState.INGESTED
    assert missing.answers_state == AnswersState.RETRY and "does not exist" in missing.answers_error
    assert not_json.answers_state == AnswersState.RETRY
    assert not_json.answers_error.startswith("The output cannot be read: it is not valid JSON")
    assert bad_schema.answers_error == "The output cannot be read: humanAnswers is an object, not a list."
    for loop in (missing, not_json, bad_schema):
        assert loop.answers_attempts == 1 and loop.answers_next_attempt_at > timezone.now()
        assert not HumanAnswer.objects.filter(loop=loop).exists()
    # Too large: the answer's metadata is kept, not its content, and the loop says why.
    assert oversized.answers_state == AnswersState.INGESTED
    assert "too large to keep" in oversized.answers_error and "w4" in oversized.answers_error
    row = HumanAnswer.objects.get(loop=oversized)
    assert (row.worker_id, row.content_too_large, row.answer_content, row.content_hash) == ("w4", True, None, "")
    assert row.content_bytes > 5000 and row.submission_time is not None


def test_access_denied_is_recorded_as_a_permission_problem(aws, flow_definition, monkeypatch):
    # moto's S3 checks no permission and no credential, so only a stand-in for S3 can answer
    # AccessDenied: a fetch that raises what loops.a2i raises for it.
    from loops import a2i

    (loop,) = complete_synced(aws, flow_definition, [[{"answerContent": {"label": "cat"}, "workerId": "w"}]])

    def denied(ref):
        raise a2i.OutputUnavailable(f"No permission to read {ref.output_s3_uri} (the dashboard needs s3:GetObject on it)",
                                    "AccessDenied")

    report = answers.ingest_due_answers(fetch=denied)
    assert report.reasons == {"AccessDenied": 1}
    loop.refresh_from_db()
    assert loop.answers_state == AnswersState.RETRY and "No permission" in loop.answers_error


def test_failed_reads_are_retried_with_backoff_then_given_up(aws, flow_definition, settings):
    settings.A2I_ANSWERS_MAX_ATTEMPTS = 3
    (loop,) = complete_synced(aws, flow_definition, [[{"answerContent": {"label": "cat"}, "workerId": "w"}]])
    delete_output(aws, loop)
    delays = []
    for attempt in range(1, 4):
        before = timezone.now()
        assert answers.ingest_due_answers().loops == 1
        assert answers.ingest_due_answers().loops == 0  # not due again before its backoff
        loop.refresh_from_db()
        assert loop.answers_attempts == attempt
        if attempt < 3:
            delays.append((loop.answers_next_attempt_at - before).total_seconds())
            HumanLoop.objects.filter(pk=loop.pk).update(answers_next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert loop.answers_state == AnswersState.FAILED and loop.answers_next_attempt_at is None
    assert delays[0] == pytest.approx(answers.BACKOFF_SECONDS, abs=5)
    assert delays[1] == pytest.approx(4 * answers.BACKOFF_SECONDS, abs=5)
    # Given up: no run reads it again, until someone asks.
    assert answers.ingest_due_answers().loops == 0
    assert answers.reset_failed() == 1
    aws.client("s3").put_object(Bucket=loop.output_s3_uri.split("/")[2], Key=loop.output_s3_uri.split("/", 3)[3],
                                Body=json.dumps({"humanAnswers": []}).encode())
    assert answers.ingest_due_answers().ingested == 1


def test_reading_twice_writes_nothing_new(aws, multi_fd):
    loops = complete_synced(aws, multi_fd, [
        [{"answerContent": {"label": "cat"}, "workerId": "w1"}, {"answerContent": {"label": "cat"}, "workerId": "w2"}],
        [{"answerContent": {"label": "dog"}, "workerId": "w1"}],
    ])
    first = answers.ingest_due_answers()
    snapshot = list(HumanAnswer.objects.order_by("pk").values())
    loop_fields = list(HumanLoop.objects.order_by("pk").values(*answers.UPDATED_FIELDS))
    assert first.answers == 3

    # A second run finds nothing to do.
    second = answers.ingest_due_answers()
    assert (second.loops, second.answers) == (0, 0)
    # Even a loop read again (a reader that lost its claim) adds no row.
    HumanLoop.objects.filter(pk=loops[0].pk).update(answers_state=AnswersState.PENDING)
    third = answers.ingest_due_answers()
    assert third.ingested == 1
    assert list(HumanAnswer.objects.order_by("pk").values()) == snapshot
    assert list(HumanLoop.objects.order_by("pk").values(*[f for f in answers.UPDATED_FIELDS if f != "answers_attempts"])) == [
        {k: v for k, v in row.items() if k != "answers_attempts"} for row in loop_fields
    ]


def test_only_completed_loops_are_read(aws, flow_definition):
    names = start_loops(aws, flow_definition, 3, prefix="mixed")
    aws.complete(names[0], answer={"label": "cat"}, worker_id="w")
    aws.fail(names[1], "ValidationError", "bad")
    sync(flow_definition)
    report = answers.ingest_due_answers()
    assert (report.loops, report.ingested) == (1, 1)
    assert set(HumanAnswer.objects.values_list("loop__name", flat=True)) == {names[0]}


def test_an_unreachable_s3_stops_the_run_without_spending_attempts(aws, flow_definition, monkeypatch, settings):
    from loops import a2i as a2i_api

    complete_synced(aws, flow_definition, [[{"answerContent": {"label": "cat"}, "workerId": f"w{i}"}] for i in range(40)])
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # a closed port: a real refusal
    settings.A2I_MAX_ATTEMPTS = 1
    settings.A2I_ANSWERS_CONCURRENCY = 2
    a2i_api.reset_clients()
    try:
        report = answers.ingest_due_answers()
    finally:
        a2i_api.reset_clients()
    assert report.unavailable and "unreachable" in report.unavailable
    assert report.loops < 40  # stopped early
    assert not HumanLoop.objects.exclude(answers_attempts=0).exists()
    # Loops never fetched are released at once; those that failed wait a minute, attempts untouched.
    assert HumanLoop.objects.filter(answers_next_attempt_at__isnull=True).count() == 40 - report.loops


def test_a_batch_limit_and_concurrent_claims_never_read_a_loop_twice(aws, flow_definition):
    complete_synced(aws, flow_definition, [[{"answerContent": {"n": i}, "workerId": "w"}] for i in range(12)])
    now = timezone.now()
    first = answers.claim_batch(5, now=now)
    second = answers.claim_batch(100, now=now)
    assert len(first) == 5 and len(second) == 7
    assert not {ref.id for ref in first} & {ref.id for ref in second}
    assert answers.claim_batch(100, now=now) == []
    # Newest first.
    assert [ref.creation_time for ref in first] == sorted((ref.creation_time for ref in first), reverse=True)
