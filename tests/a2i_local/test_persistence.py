"""--db PATH: state survives a restart; NextTokens issued before the restart stay valid."""

import json

from a2i_local.testing import a2i_local_server

from .conftest import start


def test_loops_flow_definitions_and_tokens_survive_a_restart(tmp_path):
    db = str(tmp_path / "a2i.sqlite3")
    with a2i_local_server(db=db, stop_delay_seconds=0) as a2i:
        arn = a2i.create_flow_definition("durable")
        runtime = a2i.client("sagemaker-a2i-runtime")
        for n in range(5):
            start(runtime, arn, f"kept-{n}", {"n": n})
        a2i.complete("kept-0", answer={"label": "cat"})
        a2i.fail("kept-1", "InternalError", "boom")
        runtime.stop_human_loop(HumanLoopName="kept-2")
        first_page = runtime.list_human_loops(FlowDefinitionArn=arn, MaxResults=2)
        before = {n: runtime.describe_human_loop(HumanLoopName=f"kept-{n}") for n in range(5)}

    with a2i_local_server(db=db) as a2i:
        runtime = a2i.client("sagemaker-a2i-runtime")
        for n in range(5):
            after = runtime.describe_human_loop(HumanLoopName=f"kept-{n}")
            for key in ("HumanLoopStatus", "CreationTime", "HumanLoopArn", "HumanLoopOutput", "FlowDefinitionArn"):
                assert after[key] == before[n][key]
        assert runtime.describe_human_loop(HumanLoopName="kept-1")["FailureCode"] == "InternalError"
        rest = runtime.list_human_loops(FlowDefinitionArn=arn, NextToken=first_page["NextToken"])
        names = [s["HumanLoopName"] for p in (first_page, rest) for s in p["HumanLoopSummaries"]]
        assert names == [f"kept-{n}" for n in reversed(range(5))]
        sagemaker = a2i.client("sagemaker")
        assert sagemaker.describe_flow_definition(FlowDefinitionName="durable")["FlowDefinitionStatus"] == "Active"
        # Idempotency and conflicts still hold against the persisted rows.
        start(runtime, arn, "kept-3", {"n": 3})
        assert a2i.health()["loops"] == 5
        json.dumps(a2i.health())


def test_a_loop_stopping_at_shutdown_becomes_stopped_after_restart(tmp_path):
    db = str(tmp_path / "a2i.sqlite3")
    with a2i_local_server(db=db, stop_delay_seconds=60) as a2i:
        arn = a2i.create_flow_definition("durable")
        runtime = a2i.client("sagemaker-a2i-runtime")
        start(runtime, arn, "halting")
        runtime.stop_human_loop(HumanLoopName="halting")
    with a2i_local_server(db=db) as a2i:
        runtime = a2i.client("sagemaker-a2i-runtime")
        assert runtime.describe_human_loop(HumanLoopName="halting")["HumanLoopStatus"] == "Stopping"
        a2i.advance_clock(61)  # the persisted due time, not an in-memory timer, drives the change
        assert runtime.describe_human_loop(HumanLoopName="halting")["HumanLoopStatus"] == "Stopped"
