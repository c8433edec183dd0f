"""POST /events/eventbridge/ over real HTTP: what it accepts, applies, and refuses (writing nothing)."""

import json
from datetime import timedelta

import pytest
import requests

from loops.models import HumanLoop, HumanLoopStatusChange, ReceivedEvent

from .conftest import ENDPOINT, TOKEN, Endpoint, for_loop, make_event, snapshot, sns_envelope


def test_a_valid_event_is_applied_with_a2is_time_failure_code_and_output(endpoint, world):
    loop = world.inv_new  # InProgress in the copy
    a2i_time = world.now - timedelta(minutes=7, seconds=3)
    event = for_loop(loop, "Failed", time=a2i_time, failure_code="ValidationError", failure_reason="bad input",
                     output_uri="s3://out/invoices/x/output.json")

    response = endpoint.post(event)

    assert response.status_code == 202, response.text
    assert response.json() == {"received": 1, "applied": 1}
    loop.refresh_from_db()
    assert (loop.status, loop.failure_code, loop.failure_reason) == ("Failed", "ValidationError", "bad input")
    assert loop.output_s3_uri == "s3://out/invoices/x/output.json"
    # A2I's clock, to the second, not the time the request arrived.
    assert loop.status_changed_at == a2i_time.replace(microsecond=0)
    change = loop.status_changes.last()
    assert (change.from_status, change.to_status, change.source) == ("InProgress", "Failed", "event")
    assert change.observed_at == a2i_time.replace(microsecond=0)
    received = ReceivedEvent.objects.get(event_id=event["id"])
    assert (received.loop_id, received.status, received.result, received.transport) == (loop.pk, "Failed", "applied", "https")
    assert received.event_time == a2i_time.replace(microsecond=0)


def test_a_json_array_of_events_is_applied_in_one_request(endpoint, world):
    events = [for_loop(world.inv_new, time=world.now), for_loop(world.inv_old, "Stopped", time=world.now)]
    response = endpoint.post(events)
    assert response.status_code == 202 and response.json() == {"received": 2, "applied": 2}
    assert dict(HumanLoop.objects.filter(name__in=["inv-new", "inv-old"]).values_list("name", "status")) == {
        "inv-new": "Completed", "inv-old": "Stopped",
    }


def test_an_sns_wrapped_event_is_applied_like_the_event(endpoint, world):
    response = endpoint.post(sns_envelope(for_loop(world.inv_new, time=world.now)))
    assert response.status_code == 202 and response.json()["applied"] == 1
    assert HumanLoop.objects.get(pk=world.inv_new.pk).status == "Completed"


def valid(world, **detail):
    event = for_loop(world.inv_new, time=world.now)
    event["detail"].update(detail)
    return event


def without(world, key, in_detail=False):
    event = for_loop(world.inv_new, time=world.now)
    (event["detail"] if in_detail else event).pop(key)
    return event


MALFORMED = {
    "not JSON": lambda w: (b'{"id": "x", ', "malformed JSON"),
    "not an object": lambda w: ([1, 2], "[0]: expected an event object, got a number"),
    "an empty array": lambda w: ([], "the array holds no event"),
    "wrong detail-type": lambda w: ({**valid(w), "detail-type": "EC2 Instance State-change Notification"}, "detail-type"),
    "wrong source": lambda w: ({**valid(w), "source": "aws.ec2"}, "source: expected 'aws.sagemaker'"),
    "no id": lambda w: (without(w, "id"), "id: missing"),
    "no detail": lambda w: (without(w, "detail"), "detail: missing"),
    "time not a time": lambda w: ({**valid(w), "time": "yesterday"}, "time: expected an ISO-8601 time"),
    "time without a zone": lambda w: ({**valid(w), "time": "2026-11-26T17:49:25"}, "time: expected an ISO-8601 time"),
    "missing status": lambda w: (without(w, "humanLoopStatus", in_detail=True), "detail.humanLoopStatus: missing"),
    "unknown status": lambda w: (valid(w, humanLoopStatus="Exploded"), "unknown status 'Exploded'"),
    "status of a type": lambda w: (valid(w, humanLoopStatus=3), "detail.humanLoopStatus: expected a string, got a number"),
    "creationTime a number": lambda w: (valid(w, creationTime=1700000000), "detail.creationTime: expected a string"),
    "loop ARN not an ARN": lambda w: (valid(w, humanLoopArn="inv-new"), "detail.humanLoopArn: not a human loop ARN"),
    "name not the ARN's": lambda w: (valid(w, humanLoopName="other"), "detail.humanLoopName"),
    "flow definition of another account": lambda w: (
        valid(w, flowDefinitionArn="arn:aws:sagemaker:us-east-1:999999999999:flow-definition/invoices"),
        "detail.flowDefinitionArn: not in the human loop's",
    ),
    "failureCode an object": lambda w: (valid(w, failureCode={}), "detail.failureCode: expected a string, got an object"),
    "output an array": lambda w: (valid(w, humanLoopOutput=[]), "detail.humanLoopOutput: expected an object"),
    "SNS Message not JSON": lambda w: ({"Type": "Notification", "Message": "{oops"}, "Message: malformed JSON"),
    "one bad event in an array": lambda w: ([valid(w), {**valid(w), "source": "x"}], "[1]source"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_is_400_with_a_json_error_and_writes_nothing(endpoint, world, case):
    body, message = MALFORMED[case](world)
    before = snapshot()
    response = endpoint.post(body)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert snapshot() == before


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer " + TOKEN[:-1]],
    # Ids without the random token: pytest-xdist's workers must collect the same names.
    ids=["none", "empty", "bearer-alone", "token-plus-one", "basic", "no-scheme", "token-minus-one"],
)
def test_a_missing_or_wrong_token_is_401_and_writes_nothing(endpoint, world, authorization):
    before = snapshot()
    headers = {} if authorization is None else {"Authorization": authorization}
    response = endpoint.post(for_loop(world.inv_new, time=world.now), token=None, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong bearer token"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert snapshot() == before


def test_a_body_over_256_kb_is_413_and_writes_nothing(endpoint, world):
    event = for_loop(world.inv_new, time=world.now)
    event["padding"] = ""
    room = 256 * 1024 - len(json.dumps(event).encode())
    event["padding"] = "x" * (room + 1)  # one byte over EventBridge's limit
    before = snapshot()
    response = endpoint.post(event)
    assert response.status_code == 413
    assert "262144 bytes" in response.json()["error"]
    assert snapshot() == before
    event["padding"] = "x" * room  # exactly at the limit
    assert endpoint.post(event).status_code == 202


def test_without_a_token_configured_the_endpoint_is_404(live_server, settings, world):
    settings.A2I_EVENTS_TOKEN = ""
    endpoint = Endpoint(live_server.url)
    before = snapshot()
    assert endpoint.post(for_loop(world.inv_new, time=world.now)).status_code == 404
    endpoint.http.close()
    assert requests.get(live_server.url + ENDPOINT, timeout=10).status_code == 404
    assert snapshot() == before


def test_only_post_is_allowed_and_no_session_or_csrf_cookie_is_involved(endpoint, world):
    assert requests.get(endpoint.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).status_code == 405
    # No CSRF token, no cookie: EventBridge has neither.
    response = endpoint.post(for_loop(world.inv_new, time=world.now))
    assert response.status_code == 202
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


def test_a_rejected_array_applies_none_of_its_valid_events(endpoint, world):
    good = for_loop(world.inv_new, time=world.now)
    bad = {**for_loop(world.inv_old, time=world.now), "detail-type": "nope"}
    assert endpoint.post([good, bad]).status_code == 400
    assert HumanLoop.objects.get(pk=world.inv_new.pk).status == "InProgress"
    assert not HumanLoopStatusChange.objects.filter(source="event").exists()


def test_an_event_for_an_unknown_loop_creates_it_with_its_creation_time(endpoint, world):
    created = world.now - timedelta(minutes=30, milliseconds=250)
    done = world.now - timedelta(minutes=2)
    event = make_event("never-synced", time=done, created=created)
    assert endpoint.post(event).json() == {"received": 1, "applied": 1}
    loop = HumanLoop.objects.get(name="never-synced")
    assert loop.flow_definition == world.fd_inv
    assert loop.arn == event["resources"][0]
    assert loop.creation_time == created.replace(microsecond=created.microsecond // 1000 * 1000)
    assert loop.status == "Completed" and loop.status_changed_at == done.replace(microsecond=0)
    assert loop.output_s3_uri == event["detail"]["humanLoopOutput"]["outputS3Uri"]
    (change,) = loop.status_changes.all()
    assert (change.from_status, change.to_status, change.source, change.observed_at) == (
        "", "Completed", "event", done.replace(microsecond=0)
    )
