"""ListHumanLoops: paging through the paginator, sort orders, time filters, tokens and errors."""

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from .conftest import error_of, raw_request, start


@pytest.fixture
def forty_loops(a2i, runtime, flow_arn):
    """40 loops started in order; returns their names oldest first."""
    names = [f"loop-{n:03d}" for n in range(40)]
    for name in names:
        start(runtime, flow_arn, name)
    return names


def paginate(runtime, page_size, **kwargs):
    pages = list(runtime.get_paginator("list_human_loops").paginate(
        PaginationConfig={"PageSize": page_size}, **kwargs))
    return pages, [s["HumanLoopName"] for p in pages for s in p["HumanLoopSummaries"]]


@pytest.mark.parametrize("page_size", [1, 7, 39, 40, 99, 100])
def test_paginator_returns_every_loop_once_newest_first_at_any_page_size(runtime, flow_arn, forty_loops, page_size):
    pages, names = paginate(runtime, page_size, FlowDefinitionArn=flow_arn)
    assert names == list(reversed(forty_loops))
    assert len(pages) == -(-40 // page_size)
    assert all(len(p["HumanLoopSummaries"]) <= page_size for p in pages)
    assert "NextToken" not in pages[-1]


@pytest.mark.parametrize("page_size", [1, 13, 100])
def test_ascending_sort_returns_oldest_first(runtime, flow_arn, forty_loops, page_size):
    _, names = paginate(runtime, page_size, FlowDefinitionArn=flow_arn, SortOrder="Ascending")
    assert names == forty_loops


def test_default_page_is_100_loops_newest_first(a2i, runtime, flow_arn):
    for n in range(105):
        start(runtime, flow_arn, f"many-{n:03d}")
    page = runtime.list_human_loops(FlowDefinitionArn=flow_arn)
    assert len(page["HumanLoopSummaries"]) == 100
    assert page["HumanLoopSummaries"][0]["HumanLoopName"] == "many-104"
    assert "NextToken" in page


def test_summaries_carry_name_status_time_reason_and_flow_definition(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "ok-loop")
    start(runtime, flow_arn, "failed-loop")
    a2i.fail("failed-loop", "InternalError", "boom")
    summaries = {s["HumanLoopName"]: s for s in runtime.list_human_loops(FlowDefinitionArn=flow_arn)["HumanLoopSummaries"]}
    assert summaries["failed-loop"]["HumanLoopStatus"] == "Failed"
    assert summaries["failed-loop"]["FailureReason"] == "boom"
    assert "FailureReason" not in summaries["ok-loop"]
    assert summaries["ok-loop"]["FlowDefinitionArn"] == flow_arn
    assert isinstance(summaries["ok-loop"]["CreationTime"], datetime)


def test_listing_is_scoped_to_the_flow_definition(a2i, runtime, flow_arn):
    other = a2i.create_flow_definition("other-flow")
    start(runtime, flow_arn, "mine")
    start(runtime, other, "theirs")
    names = [s["HumanLoopName"] for s in runtime.list_human_loops(FlowDefinitionArn=flow_arn)["HumanLoopSummaries"]]
    assert names == ["mine"]


def test_max_results_may_change_between_pages(runtime, flow_arn, forty_loops):
    first = runtime.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=5)
    second = runtime.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=30, NextToken=first["NextToken"])
    names = [s["HumanLoopName"] for p in (first, second) for s in p["HumanLoopSummaries"]]
    assert names == list(reversed(forty_loops))[:35]


# -- time filters -------------------------------------------------------------------------------


@pytest.fixture
def three_loops_ms_apart(a2i, runtime, flow_arn):
    """Three loops with distinct creation milliseconds; returns [(name, creation datetime)]."""
    loops = []
    for name in ("early", "middle", "late"):
        start(runtime, flow_arn, name)
        loops.append((name, runtime.describe_human_loop(HumanLoopName=name)["CreationTime"].astimezone(UTC)))
        time.sleep(0.005)
    return loops


def test_creation_time_after_is_inclusive_and_before_is_exclusive(runtime, flow_arn, three_loops_ms_apart):
    (_, early), (_, middle), (_, late) = three_loops_ms_apart
    page = runtime.list_human_loops(FlowDefinitionArn=flow_arn, CreationTimeAfter=middle, CreationTimeBefore=late,
                                    SortOrder="Ascending")
    assert [s["HumanLoopName"] for s in page["HumanLoopSummaries"]] == ["middle"]
    page = runtime.list_human_loops(FlowDefinitionArn=flow_arn, CreationTimeAfter=early,
                                    CreationTimeBefore=late + timedelta(milliseconds=1), SortOrder="Ascending")
    assert [s["HumanLoopName"] for s in page["HumanLoopSummaries"]] == ["early", "middle", "late"]


def iso_forms(moment: datetime) -> dict[str, str]:
    """One instant written every way clients send it."""
    local = moment.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    return {
        "milliseconds-z": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "microseconds-z": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "offset": local.isoformat(timespec="milliseconds"),
        "epoch-seconds": f"{moment.timestamp():.3f}",
    }


@pytest.mark.parametrize("form", ["milliseconds-z", "microseconds-z", "offset", "epoch-seconds"])
def test_every_timestamp_form_is_accepted_in_the_query(a2i, flow_arn, three_loops_ms_apart, form):
    (_, _), (_, middle), (_, late) = three_loops_ms_apart
    query = urlencode({"FlowDefinitionArn": flow_arn, "CreationTimeAfter": iso_forms(middle)[form],
                       "CreationTimeBefore": iso_forms(late)[form], "SortOrder": "Ascending"})
    status, _, body = raw_request(a2i, "GET", f"/human-loops?{query}")
    assert status == 200, body
    assert [s["HumanLoopName"] for s in body["HumanLoopSummaries"]] == ["middle"]


def test_whole_second_and_date_only_forms_are_accepted(a2i, flow_arn, three_loops_ms_apart):
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)
    for after, before, expected in [
        (today.isoformat(), tomorrow.isoformat(), 3),
        (tomorrow.isoformat(), None, 0),
        (None, today.isoformat(), 0),
        (f"{today}T00:00:00Z", f"{tomorrow}T00:00:00Z", 3),
    ]:
        params = {"FlowDefinitionArn": flow_arn}
        if after:
            params["CreationTimeAfter"] = after
        if before:
            params["CreationTimeBefore"] = before
        status, _, body = raw_request(a2i, "GET", "/human-loops?" + urlencode(params))
        assert status == 200
        assert len(body["HumanLoopSummaries"]) == expected, (after, before)


@pytest.mark.parametrize("field", ["CreationTimeAfter", "CreationTimeBefore"])
def test_malformed_timestamp_is_a_validation_error_naming_the_field(a2i, flow_arn, field):
    query = urlencode({"FlowDefinitionArn": flow_arn, field: "yesterday"})
    status, headers, body = raw_request(a2i, "GET", f"/human-loops?{query}")
    assert status == 400
    assert headers["x-amzn-errortype"] == "ValidationException"
    assert f"at '{field[0].lower() + field[1:]}'" in body["Message"]


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_flow_definition_is_a_404(a2i, runtime):
    arn = f"arn:aws:sagemaker:{a2i.region}:{a2i.account_id}:flow-definition/nowhere"
    with pytest.raises(runtime.exceptions.ResourceNotFoundException) as excinfo:
        runtime.list_human_loops(FlowDefinitionArn=arn)
    assert error_of(excinfo)[:2] == ("ResourceNotFoundException", 404)


def test_max_results_above_100_is_a_validation_error_with_aws_wording(runtime, flow_arn):
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=101)
    assert error_of(excinfo)[2] == (
        "1 validation error detected: Value '101' at 'maxResults' failed to satisfy constraint: "
        "Member must have value less than or equal to 100")


def test_unknown_sort_order_is_a_validation_error(runtime, flow_arn):
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.list_human_loops(FlowDefinitionArn=flow_arn, SortOrder="Sideways")
    assert "Member must satisfy enum value set: [Ascending, Descending]" in error_of(excinfo)[2]


def test_malformed_flow_definition_arn_is_a_validation_error(runtime):
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.list_human_loops(FlowDefinitionArn="arn:aws:s3:::bucket")
    assert "at 'flowDefinitionArn'" in error_of(excinfo)[2]


def test_missing_flow_definition_arn_is_a_validation_error(a2i):
    status, _, body = raw_request(a2i, "GET", "/human-loops")
    assert status == 400
    assert "Value null at 'flowDefinitionArn' failed to satisfy constraint: Member must not be null" in body["Message"]


def test_garbage_next_token_is_a_validation_error(runtime, flow_arn):
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.list_human_loops(FlowDefinitionArn=flow_arn, NextToken="not-a-token")
    assert "NextToken" in error_of(excinfo)[2]


def test_tampered_next_token_is_a_validation_error(runtime, flow_arn, forty_loops):
    token = runtime.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=5)["NextToken"]
    body, mac = token.split(".")
    tampered = body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac
    with pytest.raises(runtime.exceptions.ValidationException):
        runtime.list_human_loops(FlowDefinitionArn=flow_arn, NextToken=tampered)


@pytest.mark.parametrize("changed", ["SortOrder", "CreationTimeAfter", "CreationTimeBefore", "FlowDefinitionArn"])
def test_next_token_reused_with_other_filters_is_a_validation_error(a2i, runtime, flow_arn, forty_loops, changed):
    other = a2i.create_flow_definition("other-flow")
    token = runtime.list_human_loops(FlowDefinitionArn=flow_arn, MaxResults=5)["NextToken"]
    params = {"FlowDefinitionArn": flow_arn, "NextToken": token}
    params[changed] = {"SortOrder": "Ascending", "CreationTimeAfter": datetime(2020, 1, 1),
                       "CreationTimeBefore": datetime(2099, 1, 1), "FlowDefinitionArn": other}[changed]
    with pytest.raises(runtime.exceptions.ValidationException) as excinfo:
        runtime.list_human_loops(**params)
    assert "different parameters" in error_of(excinfo)[2]


def test_an_epoch_beyond_any_date_is_a_validation_error_not_a_500(a2i, flow_arn):
    query = urlencode({"FlowDefinitionArn": flow_arn, "CreationTimeAfter": "99999999999999999999"})
    status, _, body = raw_request(a2i, "GET", f"/human-loops?{query}")
    assert status == 400 and "at 'creationTimeAfter'" in body["Message"]
