"""End-to-end smoke test: a real boto3 client drives every runtime operation once."""

import json


def test_start_describe_list_complete_stop_delete_round_trip(a2i, a2i_client, s3_client):
    arn = a2i.create_flow_definition("smoke")
    a2i.configure(stop_delay_seconds=0)
    loop_arn = a2i_client.start_human_loop(
        HumanLoopName="first", FlowDefinitionArn=arn, HumanLoopInput={"InputContent": json.dumps({"x": 1})}
    )["HumanLoopArn"]
    assert loop_arn == f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:human-loop/first"
    a2i_client.start_human_loop(HumanLoopName="second", FlowDefinitionArn=arn, HumanLoopInput={"InputContent": "{}"})

    described = a2i_client.describe_human_loop(HumanLoopName="first")
    assert described["HumanLoopStatus"] == "InProgress"
    names = [s["HumanLoopName"] for s in a2i_client.list_human_loops(FlowDefinitionArn=arn)["HumanLoopSummaries"]]
    assert names == ["second", "first"]

    a2i.complete("first", answer={"label": "cat"}, worker_id="w-1")
    uri = a2i_client.describe_human_loop(HumanLoopName="first")["HumanLoopOutput"]["OutputS3Uri"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    document = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert document["humanAnswers"][0]["answerContent"] == {"label": "cat"}

    a2i_client.stop_human_loop(HumanLoopName="second")
    assert a2i_client.describe_human_loop(HumanLoopName="second")["HumanLoopStatus"] == "Stopped"
    a2i_client.delete_human_loop(HumanLoopName="second")
    names = [s["HumanLoopName"] for s in a2i_client.list_human_loops(FlowDefinitionArn=arn)["HumanLoopSummaries"]]
    assert names == ["first"]
