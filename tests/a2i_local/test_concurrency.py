"""Concurrent requests: no lost or duplicated loops, idempotent starts race safely."""

from concurrent.futures import ThreadPoolExecutor

from .conftest import start


def test_parallel_starts_create_every_loop_exactly_once(a2i, flow_arn):
    clients = [a2i.client("sagemaker-a2i-runtime") for _ in range(6)]

    def worker(index):
        client = clients[index]
        return [start(client, flow_arn, f"w{index}-loop-{n:02d}") for n in range(25)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        arns = [arn for batch in pool.map(worker, range(6)) for arn in batch]
    assert len(arns) == len(set(arns)) == 150
    listed = [s["HumanLoopName"] for p in clients[0].get_paginator("list_human_loops").paginate(
        FlowDefinitionArn=flow_arn) for s in p["HumanLoopSummaries"]]
    assert sorted(listed) == sorted(arn.rsplit("/", 1)[1] for arn in arns)


def test_racing_identical_starts_yield_one_loop_and_one_arn(a2i, flow_arn):
    clients = [a2i.client("sagemaker-a2i-runtime") for _ in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        arns = list(pool.map(lambda c: start(c, flow_arn, "contested", {"same": True}), clients))
    assert len(set(arns)) == 1
    assert a2i.health()["loops"] == 1


def test_racing_completions_complete_once_and_the_rest_get_409(a2i, runtime, flow_arn):
    from a2i_local.testing import ControlAPIError

    start(runtime, flow_arn, "prize")

    def complete(worker):
        try:
            a2i.complete("prize", answer={"by": worker}, worker_id=worker)
            return 200
        except ControlAPIError as exc:
            return exc.status

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(complete, [f"w{n}" for n in range(4)]))
    assert statuses[0] == 200 and statuses.count(200) == 1
    assert set(statuses[1:]) == {409}
    assert runtime.describe_human_loop(HumanLoopName="prize")["HumanLoopStatus"] == "Completed"
