"""`manage.py ingest_answers [--flow-definition ARN] [--since ISO] [--retry-failed]`: a backfill
with progress (done, rate, time left) on a terminal and one line per batch otherwise."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from loops.models import AnswersState, HumanAnswer, HumanLoop, ReviewerStats
from loops.services import answers

from .conftest import complete_synced, delete_output

pytestmark = pytest.mark.django_db


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args, stdout=None) -> str:
    out = stdout or io.StringIO()
    call_command("ingest_answers", *args, stdout=out)
    return out.getvalue()


def answers_for(n: int, worker="w") -> list[list[dict]]:
    return [[{"answerContent": {"n": i}, "workerId": worker}] for i in range(n)]


def test_it_reads_every_due_loop_and_prints_one_line_per_batch(aws, flow_definition, monkeypatch):
    complete_synced(aws, flow_definition, answers_for(7))
    monkeypatch.setattr(answers, "BATCH_SIZE", 3)
    output = run()
    lines = output.splitlines()
    assert lines[0] == "reading the answers of 7 loops"
    progress = [line for line in lines if " / 7 loops" in line]
    assert [line.split(" / ")[0] for line in progress] == ["3", "6", "7"]
    assert all("loops/s" in line for line in progress)
    assert lines[-1].startswith("done in ") and "7 loops: 7 read (7 answers), 0 unreadable" in lines[-1]
    assert HumanAnswer.objects.count() == 7
    assert ReviewerStats.objects.filter(window="all", flow_definition__isnull=True, worker_id="w").get().answers == 7
    flow_definition.refresh_from_db()
    assert flow_definition.stats["review_seconds"]["source"] == "answers"
    assert run() == "no loop's answers to read\n"


def test_on_a_terminal_the_progress_line_is_rewritten(aws, flow_definition, monkeypatch):
    complete_synced(aws, flow_definition, answers_for(4))
    monkeypatch.setattr(answers, "BATCH_SIZE", 2)
    output = run(stdout=Terminal())
    assert output.count("\r") == 2
    assert "\r2 / 4 loops (50 %)" in output and "left" in output and "\r4 / 4 loops (100 %)" in output


def test_flow_definition_and_since_restrict_the_loops(aws, flow_definition, multi_fd):
    old, new = complete_synced(aws, flow_definition, answers_for(2))
    HumanLoop.objects.filter(pk=old.pk).update(creation_time=old.creation_time - timedelta(days=5))
    complete_synced(aws, multi_fd, answers_for(1), prefix="other")
    since = (new.creation_time - timedelta(minutes=1)).isoformat()
    assert "reading the answers of 1 loops" in run("--flow-definition", flow_definition.arn, "--since", since)
    assert list(HumanAnswer.objects.values_list("loop__name", flat=True)) == [new.name]
    assert "reading the answers of 2 loops" in run()


def test_retry_failed_reads_given_up_loops_again(aws, flow_definition, settings):
    settings.A2I_ANSWERS_MAX_ATTEMPTS = 1
    (loop,) = complete_synced(aws, flow_definition, answers_for(1))
    content = aws.client("s3").get_object(Bucket=loop.output_s3_uri.split("/")[2], Key=loop.output_s3_uri.split("/", 3)[3])["Body"].read()
    delete_output(aws, loop)
    assert "1 unreadable (1 given up) [NoSuchKey 1]" in run()
    assert HumanLoop.objects.get(pk=loop.pk).answers_state == AnswersState.FAILED
    assert run() == "no loop's answers to read\n"
    aws.client("s3").put_object(Bucket=loop.output_s3_uri.split("/")[2], Key=loop.output_s3_uri.split("/", 3)[3], Body=content)
    output = run("--retry-failed")
    assert output.startswith("1 loops whose file was given up or waiting: reading them again")
    assert HumanLoop.objects.get(pk=loop.pk).answers_state == AnswersState.INGESTED


def test_limit_stops_after_n_loops(aws, flow_definition):
    complete_synced(aws, flow_definition, answers_for(5))
    assert "reading the answers of 2 loops" in run("--limit", "2")
    assert HumanLoop.objects.filter(answers_state=AnswersState.INGESTED).count() == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flow-definition", "arn:aws:sagemaker:us-east-1:123456789012:flow-definition/none"], "no flow definition"),
        (["--since", "last tuesday"], "is not an ISO-8601 date or time"),
        (["--since", "0001-01-01T00:00:00+05:00"], "is out of range"),
        (["--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_arguments_are_a_clear_error(db, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_an_unreachable_s3_exits_with_status_1(aws, flow_definition, monkeypatch, settings):
    from loops import a2i as a2i_api

    complete_synced(aws, flow_definition, answers_for(2))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    settings.A2I_MAX_ATTEMPTS = 1
    a2i_api.reset_clients()
    try:
        with pytest.raises(CommandError, match="S3 unreachable"):
            run()
    finally:
        a2i_api.reset_clients()
