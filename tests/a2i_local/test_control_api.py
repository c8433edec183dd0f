"""The rest of the control API: reset, health, config, clock, and unknown routes."""

import pytest

from a2i_local.testing import ControlAPIError

from .conftest import raw_request, start


def test_health_reports_ok_and_the_loop_count(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "counted")
    health = a2i.health()
    assert health["status"] == "ok"
    assert health["loops"] == 1
    assert health["flow_definitions"] == 1


def test_reset_drops_every_loop_and_flow_definition_and_restores_options(a2i, runtime, flow_arn):
    start(runtime, flow_arn, "forgotten")
    a2i.configure(stop_delay_seconds=9, max_active_loops=3)
    a2i.reset()
    assert a2i.health()["loops"] == 0
    assert a2i.options.stop_delay_seconds == 2.0 and a2i.options.max_active_loops is None
    with pytest.raises(runtime.exceptions.ResourceNotFoundException):
        runtime.list_human_loops(FlowDefinitionArn=flow_arn)


def test_config_changes_live_options_and_returns_them(a2i):
    reply = a2i.configure(error_rate=0.25, throttle_tps=5, max_active_loops=None, workforce_start_rate=2)
    assert reply["error_rate"] == 0.25 and reply["throttle_tps"] == 5.0
    assert a2i.options.error_rate == 0.25 and a2i.options.workforce_start_rate == 2.0
    assert a2i.control("GET", "/_local/config")["error_rate"] == 0.25


@pytest.mark.parametrize("fields", [{"port": 1}, {"region": "eu-west-1"}, {"no_such_option": 1}])
def test_config_refuses_fields_that_cannot_change_live(a2i, fields):
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.configure(**fields)
    assert excinfo.value.status == 400
    assert list(fields)[0] in excinfo.value.body["message"]


@pytest.mark.parametrize("fields", [{"error_rate": 2}, {"error_rate": "high"}, {"latency_ms": -1},
                                    {"stop_delay_seconds": None}, {"strict_names": "yes"},
                                    {"stop_delay_seconds": float("inf")}])
def test_config_refuses_bad_values_and_changes_nothing(a2i, fields):
    with pytest.raises(ControlAPIError) as excinfo:
        a2i.configure(latency_ms=5, **fields) if "latency_ms" not in fields else a2i.configure(**fields)
    assert excinfo.value.status == 400
    assert a2i.options.latency_ms == 0


def test_clock_advances_the_store_time(a2i, runtime, flow_arn):
    before = a2i.store.now()
    a2i.advance_clock(3600)
    assert (a2i.store.now() - before).total_seconds() >= 3600
    start(runtime, flow_arn, "from-the-future")
    created = runtime.describe_human_loop(HumanLoopName="from-the-future")["CreationTime"]
    assert (created - before).total_seconds() >= 3600


def test_unknown_control_route_is_a_plain_404(a2i):
    status, _, body = raw_request(a2i, "GET", "/_local/nothing")
    assert status == 404 and body["error"] == "NotFound"
