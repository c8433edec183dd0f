"""Discovery of flow definitions, and the single-loop helpers the actions use."""

import time

import pytest

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, SyncRun
from loops.services.discovery import discover_flow_definitions
from loops.services.loop_state import mark_loop_deleted_upstream, refresh_loop, set_loop_status, timeline
from loops.services.sync import sync_flow_definition
from tests.conftest import start_loops

pytestmark = pytest.mark.django_db


def test_discovery_stores_describe_flow_definition_fields_and_marks_vanished_ones(aws):
    arn = aws.create_flow_definition("described", task_availability_lifetime_seconds=3600)
    gone_arn = aws.create_flow_definition("doomed")

    found = discover_flow_definitions()

    assert {fd.arn for fd in found} == {arn, gone_arn}
    fd = FlowDefinition.objects.get(arn=arn)
    described = aws.client("sagemaker").describe_flow_definition(FlowDefinitionName="described")
    config = described["HumanLoopConfig"]
    assert (fd.name, fd.region, fd.status) == ("described", aws.region, "Active")
    assert fd.creation_time == described["CreationTime"]
    assert fd.output_s3_path == described["OutputConfig"]["S3OutputPath"]
    assert (fd.task_availability_lifetime_seconds, fd.task_title, fd.workteam_arn, fd.task_count) == (
        3600, config["TaskTitle"], config["WorkteamArn"], config["TaskCount"])
    assert fd.description["FlowDefinitionArn"] == arn and isinstance(fd.description["CreationTime"], str)
    assert SyncRun.objects.filter(kind="discovery", outcome="succeeded", loops_seen=2).exists()

    aws.client("sagemaker").delete_flow_definition(FlowDefinitionName="doomed")
    doomed = FlowDefinition.objects.get(arn=gone_arn)
    HumanLoop.objects.create(
        flow_definition=doomed, name="orphan", arn=a2i_api.human_loop_arn(gone_arn, "orphan"), status="Completed",
        creation_time=fd.creation_time, first_seen_at=fd.creation_time, last_seen_at=fd.creation_time,
        status_changed_at=fd.creation_time,
    )
    # Deleting may take a moment in A2I (Deleting -> gone); discovery marks it once it is no longer listed.
    for _ in range(50):
        if all(s["FlowDefinitionArn"] != gone_arn for s in a2i_api.iter_flow_definitions(aws.region)):
            break
        time.sleep(0.1)
    discover_flow_definitions()
    doomed.refresh_from_db()
    assert doomed.deleted_upstream
    assert HumanLoop.objects.get(name="orphan").deleted_upstream
    assert not FlowDefinition.objects.get(arn=arn).deleted_upstream


def test_set_loop_status_records_one_transition_and_reports_change(aws, flow_definition):
    [name] = start_loops(aws, flow_definition, 1)
    sync_flow_definition(flow_definition.pk, full=False)
    loop = HumanLoop.objects.get(name=name)

    assert set_loop_status(loop, "Stopping") is True
    assert set_loop_status(loop, "Stopping") is False

    loop.refresh_from_db()
    assert loop.status == "Stopping"
    rows = list(HumanLoopStatusChange.objects.filter(loop=loop).values_list("from_status", "to_status"))
    assert rows == [("InProgress", "Stopping")]
    assert [(c.from_status, c.to_status) for c in timeline(loop)] == [("", "InProgress"), ("InProgress", "Stopping")]


def test_refresh_loop_applies_describe_and_marks_a_vanished_loop_deleted(aws, flow_definition):
    names = start_loops(aws, flow_definition, 2)
    sync_flow_definition(flow_definition.pk, full=False)
    aws.fail(names[0], "Expired", "too old")
    aws.complete(names[1], answer={"label": "x"})
    aws.client("sagemaker-a2i-runtime").delete_human_loop(HumanLoopName=names[1])

    failed = refresh_loop(HumanLoop.objects.get(name=names[0]))
    gone = refresh_loop(HumanLoop.objects.get(name=names[1]))

    described = aws.client("sagemaker-a2i-runtime").describe_human_loop(HumanLoopName=names[0])
    assert (failed.status, failed.failure_code, failed.failure_reason) == ("Failed", "Expired", "too old")
    assert failed.output_s3_uri == described["HumanLoopOutput"]["OutputS3Uri"]
    assert gone.deleted_upstream and gone.deleted_upstream_at and gone.status == "InProgress"


def test_mark_loop_deleted_upstream_keeps_the_first_time(aws, flow_definition):
    [name] = start_loops(aws, flow_definition, 1)
    sync_flow_definition(flow_definition.pk, full=False)
    loop = HumanLoop.objects.get(name=name)
    mark_loop_deleted_upstream(loop)
    first = HumanLoop.objects.get(pk=loop.pk).deleted_upstream_at
    mark_loop_deleted_upstream(HumanLoop.objects.get(pk=loop.pk))
    assert HumanLoop.objects.get(pk=loop.pk).deleted_upstream_at == first


def test_read_human_loop_output_reads_output_json_and_explains_a_missing_one(aws, flow_definition):
    names = start_loops(aws, flow_definition, 2)
    aws.complete(names[0], answer={"label": "cat"})
    region = aws.region
    done = a2i_api.describe_human_loop(region, names[0])
    output = a2i_api.read_human_loop_output(done["HumanLoopOutput"]["OutputS3Uri"], region)
    assert output["humanLoopName"] == names[0]
    assert output["humanAnswers"][0]["answerContent"] == {"label": "cat"}

    pending = a2i_api.describe_human_loop(region, names[1])
    with pytest.raises(a2i_api.OutputUnavailable, match="does not exist"):
        a2i_api.read_human_loop_output(pending["HumanLoopOutput"]["OutputS3Uri"], region)
    with pytest.raises(a2i_api.OutputUnavailable, match="Not an S3 object URI"):
        a2i_api.read_human_loop_output("https://example.com/x", region)
