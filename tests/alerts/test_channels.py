"""Channels against real receivers: e-mail to an SMTP server (aiosmtpd), webhook and Slack to HTTP
servers; failures recorded and retried with backoff; the test button; a failing channel shows."""

from datetime import timedelta

import pytest
from django.test import Client

from loops.models import AlertChannel, AlertDelivery
from loops.services import notify
from loops.services.alerts import evaluate_rules

from .conftest import add_loops, free_port, make_rule, webhook_channel

pytestmark = pytest.mark.usefixtures("no_hold")


@pytest.fixture
def firing(fleet):
    """One loop about to expire: an expiring rule over every flow definition fires for `invoices`."""
    add_loops(fleet.inv, "InProgress", 1, age=timedelta(minutes=55), now=fleet.now)
    return fleet.now


def fire(rule_channels, now):
    make_rule("expiring", channels=rule_channels)
    tick = evaluate_rules(now=now)
    assert len(tick.deliveries) == len(rule_channels)
    return [AlertDelivery.objects.get(pk=pk) for pk in tick.deliveries]


def test_email_is_received_by_a_real_smtp_server(firing, smtp_server, settings):
    settings.A2I_SITE_URL = "https://a2i.example.com"
    channel = AlertChannel.objects.create(name="ops mail", kind="email", target="ops@example.com, lead@example.com")
    [delivery] = fire([channel], firing)

    outcome = notify.deliver(delivery.pk, now=firing)

    assert outcome.status == "sent"
    [(sender, recipients, message)] = smtp_server.messages
    assert sender == "alerts@a2i.test" and recipients == ["ops@example.com", "lead@example.com"]
    assert message["Subject"] == "[FIRING] expiring rule: invoices (us-east-1)"
    body = message.get_payload(decode=True).decode()
    assert "1 InProgress loop(s) older than 80%" in body
    assert "https://a2i.example.com/loops/?flow_definition=" in body and "https://a2i.example.com/alerts/" in body
    delivery.refresh_from_db()
    assert delivery.status == "sent" and delivery.attempts == 1 and delivery.http_status is None


def test_an_unreachable_smtp_server_is_recorded_and_retried(firing, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    channel = AlertChannel.objects.create(name="mail", kind="email", target="ops@example.com")
    [delivery] = fire([channel], firing)
    outcome = notify.deliver(delivery.pk, now=firing)
    assert outcome.status == "retrying" and outcome.retry_in == settings.A2I_NOTIFY_RETRY_SECONDS
    delivery.refresh_from_db()
    assert "ConnectionRefusedError" in delivery.error


def test_slack_receives_text_with_links(firing, receivers, settings):
    settings.A2I_SITE_URL = "https://a2i.example.com"
    receiver = receivers()
    [delivery] = fire([webhook_channel(receiver, kind="slack", name="slack")], firing)
    notify.deliver(delivery.pk, now=firing)
    [request] = receiver.requests
    assert set(request["json"]) == {"text"}
    text = request["json"]["text"]
    assert text.startswith("*[FIRING] expiring rule: invoices (us-east-1)*")
    assert "<https://a2i.example.com/alerts/|Alerts>" in text and "|See them>" in text
    assert request["path"] == "/hook/secret-part"


def test_a_failing_receiver_is_retried_with_backoff_and_every_failure_recorded(firing, receivers, settings):
    settings.A2I_NOTIFY_MAX_ATTEMPTS = 5
    settings.A2I_NOTIFY_RETRY_SECONDS = 30
    receiver = receivers(statuses=(500, 503, 200))
    channel = webhook_channel(receiver)
    [delivery] = fire([channel], firing)

    first = notify.deliver(delivery.pk, now=firing)
    assert (first.status, first.retry_in) == ("retrying", 30)
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.http_status) == (1, 500) and delivery.error.startswith("HTTP 500: receiver says no")
    assert delivery.next_attempt_at == firing + timedelta(seconds=30)

    assert notify.deliver(delivery.pk, now=firing + timedelta(seconds=10)) is None  # not due yet: nothing sent
    second = notify.deliver(delivery.pk, now=firing + timedelta(seconds=30))
    assert (second.status, second.retry_in) == ("retrying", 60)  # backoff doubles
    third = notify.deliver(delivery.pk, now=firing + timedelta(seconds=90))
    assert third.status == "sent"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.http_status, delivery.error) == ("sent", 3, 200, "")
    assert len(receiver.requests) == 3
    assert notify.deliver(delivery.pk, now=firing + timedelta(hours=1)) is None  # sent: never again


def test_a_receiver_that_keeps_failing_gives_up_and_the_channel_shows_failing(firing, receivers, settings, operator):
    settings.A2I_NOTIFY_MAX_ATTEMPTS = 3
    receiver = receivers(statuses=(502,))
    channel = webhook_channel(receiver, name="broken hook")
    [delivery] = fire([channel], firing)
    when = firing
    outcomes = []
    for _ in range(3):
        outcome = notify.deliver(delivery.pk, now=when)
        outcomes.append(outcome.status)
        when += timedelta(seconds=outcome.retry_in or 0)
    assert outcomes == ["retrying", "retrying", "failed"]
    channel.refresh_from_db()
    assert channel.is_failing and channel.consecutive_failures == 3

    client = Client()
    client.force_login(operator)
    page = client.get("/alerts/").content.decode()
    assert "failing</span> 3 failed attempts in a row: HTTP 502" in page
    # The page shows the webhook's host, not its path (which often carries the secret).
    assert "secret-part" not in page


def test_a_permanent_http_error_is_not_retried(firing, receivers):
    receiver = receivers(statuses=(404,))
    [delivery] = fire([webhook_channel(receiver)], firing)
    assert notify.deliver(delivery.pk, now=firing).status == "failed"
    assert len(receiver.requests) == 1


def test_an_unreachable_webhook_is_recorded_with_its_error(firing):
    channel = AlertChannel.objects.create(name="nobody", kind="webhook", target=f"http://127.0.0.1:{free_port()}/hook")
    [delivery] = fire([channel], firing)
    assert notify.deliver(delivery.pk, now=firing).status == "retrying"
    delivery.refresh_from_db()
    assert delivery.http_status is None and "ConnectionError" in delivery.error


def test_lost_deliveries_are_found_by_the_sweep(firing, receivers):
    receiver = receivers()
    [delivery] = fire([webhook_channel(receiver)], firing)
    assert notify.overdue_deliveries(now=firing) == []  # just queued: its task is on the way
    assert notify.overdue_deliveries(now=firing + timedelta(minutes=5)) == [delivery.pk]
    # A sender that died mid-send: its claim runs out, then the sweep takes it over.
    AlertDelivery.objects.filter(pk=delivery.pk).update(status="sending", claimed_until=firing + timedelta(minutes=2))
    assert notify.overdue_deliveries(now=firing + timedelta(minutes=1)) == []
    assert notify.overdue_deliveries(now=firing + timedelta(minutes=3)) == [delivery.pk]
    assert notify.deliver(delivery.pk, now=firing + timedelta(minutes=3)).status == "sent"


def test_the_test_button_sends_a_test_notification_and_reports_the_outcome(db, receivers, operator, smtp_server):
    good, bad = receivers(), receivers(statuses=(500,))
    hook = webhook_channel(good, name="good")
    broken = webhook_channel(bad, name="bad")
    mail = AlertChannel.objects.create(name="mail", kind="email", target="ops@example.com")
    client = Client()
    client.force_login(operator)

    response = client.post(f"/alerts/channels/{hook.pk}/test/", follow=True)
    assert "Test notification sent to “good”." in response.content.decode()
    assert good.requests[0]["json"]["test"] is True and good.requests[0]["json"]["state"] == "test"

    response = client.post(f"/alerts/channels/{broken.pk}/test/", follow=True)
    assert "Test notification to “bad” failed: HTTP 500" in response.content.decode()
    assert len(bad.requests) == 1  # a test is sent once, never retried
    assert AlertDelivery.objects.get(channel=broken).status == "failed"

    client.post(f"/alerts/channels/{mail.pk}/test/")
    assert smtp_server.messages[0][2]["Subject"] == "[TEST] Test notification: test"
    assert AlertDelivery.objects.filter(is_test=True).count() == 3


def test_deliveries_are_listed_on_the_alerts_page(firing, receivers, viewer):
    receiver = receivers(statuses=(500,))
    [delivery] = fire([webhook_channel(receiver)], firing)
    notify.deliver(delivery.pk, now=firing)
    client = Client()
    client.force_login(viewer)
    page = client.get("/alerts/").content.decode()
    assert "delivery-retrying" in page and "HTTP 500: receiver says no" in page
