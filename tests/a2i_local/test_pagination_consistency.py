"""A listing paginated while loops are started and deleted neither skips nor repeats a loop
that existed throughout (keyset NextToken, not an offset)."""

import threading

import pytest

from .conftest import start


@pytest.mark.parametrize("sort_order", ["Descending", "Ascending"])
def test_no_skip_no_repeat_under_concurrent_starts_and_deletes(a2i, flow_arn, sort_order):
    a2i.configure(stop_delay_seconds=0)
    setup = a2i.client("sagemaker-a2i-runtime")
    stable = [f"stable-{n:03d}" for n in range(150)]
    doomed = [f"doomed-{n:03d}" for n in range(60)]
    # Interleave them so deletions land before, inside and after each page boundary.
    for s_name, d_name in zip(stable, doomed + [None] * (len(stable) - len(doomed)), strict=True):
        start(setup, flow_arn, s_name)
        if d_name:
            start(setup, flow_arn, d_name)
            setup.stop_human_loop(HumanLoopName=d_name)

    stop = threading.Event()
    churn_errors = []
    churned = []  # operations the churn thread completed while the reader paginated

    def churn():
        client = a2i.client("sagemaker-a2i-runtime")
        n = 0
        try:
            for name in doomed:
                if stop.is_set():
                    break
                client.delete_human_loop(HumanLoopName=name)
                start(client, flow_arn, f"newcomer-{n:04d}")
                churned.append(name)
                n += 1
            while not stop.is_set():
                start(client, flow_arn, f"newcomer-{n:04d}")
                churned.append(n)
                n += 1
        except Exception as exc:  # surfaced in the main thread
            churn_errors.append(exc)

    thread = threading.Thread(target=churn)
    reader = a2i.client("sagemaker-a2i-runtime")
    thread.start()
    try:
        seen = []
        for page in reader.get_paginator("list_human_loops").paginate(
                FlowDefinitionArn=flow_arn, SortOrder=sort_order, PaginationConfig={"PageSize": 7}):
            seen.extend(s["HumanLoopName"] for s in page["HumanLoopSummaries"])
        churned_during_listing = len(churned)
    finally:
        stop.set()
        thread.join()
    assert not churn_errors
    assert churned_during_listing > 5, "the churn thread did not run while the listing was paginated"
    assert len(seen) == len(set(seen)), "a loop was listed twice"
    listed_stable = [name for name in seen if name.startswith("stable-")]
    expected = stable if sort_order == "Ascending" else list(reversed(stable))
    assert listed_stable == expected, "a loop that existed throughout was skipped or misordered"
