"""Notifications: send one AlertDelivery through its channel, record the outcome, schedule a retry.

Transports follow healthchecks' shape: one small class per channel kind with one `send`
method that returns the HTTP status (None for e-mail) or raises DeliveryError; the caller
(`deliver`) records every attempt on the delivery and on its channel, so a channel that keeps
failing shows as failing instead of raising anywhere.

    Email    Django's mail framework (EMAIL_URL or EMAIL_HOST/... settings), plain text
    Webhook  JSON POST of the alert (rule, scope, state, value, the first loops, links)
    Slack    a Slack-compatible incoming webhook: {"text": ...} with links

A delivery is claimed before it is sent (a conditional UPDATE of status and claimed_until),
so a Celery retry and the tick's sweep of overdue deliveries never send it twice.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from loops.formatting import utc
from loops.models import AlertChannel, AlertDelivery, AlertTransition
from loops.services.alerts import describe

logger = logging.getLogger(__name__)

# A sender holds a claimed delivery this long; past it, the sweep may take it over (a killed worker).
CLAIM = timedelta(minutes=2)
# A delivery still waiting this long after it was due was lost (its task never ran): the sweep re-sends it.
OVERDUE = timedelta(minutes=2)
# HTTP answers that will not change by retrying (Slack answers 404 for a removed webhook).
PERMANENT_STATUSES = {400, 401, 403, 404, 405, 410, 413, 422}


class DeliveryError(Exception):
    def __init__(self, message: str, http_status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.permanent = permanent


# --- what is sent ----------------------------------------------------------------------------


def absolute(path: str) -> str:
    return f"{settings.A2I_SITE_URL}{path}" if path else ""


def scope_label(flow_definition, rule=None) -> str:
    if flow_definition is not None:
        return f"{flow_definition.name} ({flow_definition.region})"
    if rule is not None and rule.kind == rule.Kind.SYNC_STALE:
        return "Celery worker"
    return "all flow definitions"


def alert_document(transition: AlertTransition) -> dict:
    """The generic webhook's JSON body; e-mail and Slack are phrased from it."""
    rule, fd = transition.rule, transition.flow_definition
    return {
        "rule": {"id": rule.pk, "name": rule.name, "kind": rule.kind, "condition": describe(rule)},
        "scope": {
            "flow_definition": fd.name if fd else None,
            "region": fd.region if fd else None,
            "arn": fd.arn if fd else None,
            "label": scope_label(fd, rule),
        },
        "state": transition.kind,  # firing | resolved | reminder (still firing)
        "at": transition.created_at.isoformat(),
        "episode": transition.episode,
        "value": transition.value,
        "summary": transition.summary,
        "loops": [
            {**loop, "url": absolute(reverse("loops:loop", args=[loop["id"]]))} for loop in transition.loops
        ],
        "links": {"alerts": absolute(reverse("loops:alerts")), "details": absolute(transition.link)},
        "test": False,
    }


def test_document(channel: AlertChannel) -> dict:
    return {
        "rule": {"id": None, "name": "Test notification", "kind": "test", "condition": "sent from the alerts page"},
        "scope": {"flow_definition": None, "region": None, "arn": None, "label": "test"},
        "state": "test",
        "at": timezone.now().isoformat(),
        "episode": 0,
        "value": None,
        "summary": f"A test notification to the channel {channel.name!r}: it works.",
        "loops": [],
        "links": {"alerts": absolute(reverse("loops:alerts")), "details": ""},
        "test": True,
    }


HEADLINES = {"firing": "FIRING", "resolved": "RESOLVED", "reminder": "STILL FIRING", "test": "TEST"}


def headline(document: dict) -> str:
    return f"[{HEADLINES.get(document['state'], document['state'])}] {document['rule']['name']}: {document['scope']['label']}"


def plain_text(document: dict) -> str:
    lines = [headline(document), "", document["summary"]]
    if document["rule"]["condition"]:
        lines.append(f"Fires when: {document['rule']['condition']}.")
    if document["loops"]:
        lines += ["", "Loops:"] + [f"- {loop['name']} ({loop['status']}): {loop['url']}" for loop in document["loops"]]
    lines.append("")
    if document["links"]["details"]:
        lines.append(f"See them: {document['links']['details']}")
    lines.append(f"Alerts: {document['links']['alerts']}")
    lines.append(f"At: {utc(document['at'])}")
    return "\n".join(lines)


def slack_text(document: dict) -> str:
    text = f"*{headline(document)}*\n{document['summary']}"
    if document["loops"]:
        text += "\n" + ", ".join(f"<{loop['url']}|{loop['name']}>" for loop in document["loops"])
    links = [f"<{document['links']['details']}|See them>"] if document["links"]["details"] else []
    links.append(f"<{document['links']['alerts']}|Alerts>")
    return text + "\n" + " · ".join(links)


# --- transports ---------------------------------------------------------------------------------


class Transport:
    def __init__(self, channel: AlertChannel):
        self.channel = channel

    def send(self, document: dict) -> int | None:
        """Send `document`; return the HTTP status (None when there is none). Raises DeliveryError."""
        raise NotImplementedError


class Email(Transport):
    def send(self, document: dict) -> None:
        recipients = [address.strip() for address in self.channel.target.split(",") if address.strip()]
        if not recipients:
            raise DeliveryError("No e-mail address.", permanent=True)
        try:
            send_mail(headline(document), plain_text(document), settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"Recipients refused: {', '.join(exc.recipients)}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        return None


class HttpTransport(Transport):
    def body(self, document: dict) -> dict:
        return document

    def send(self, document: dict) -> int:
        timeout = settings.A2I_NOTIFY_TIMEOUT
        try:
            # No redirects: a webhook URL that redirects is a misconfiguration to report, and a
            # redirect would turn the POST into a GET.
            response = requests.post(self.channel.target, json=self.body(document), timeout=(timeout, timeout),
                                     allow_redirects=False, headers={"User-Agent": "a2i-dashboard"})
        except requests.RequestException as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(
                f"HTTP {response.status_code}: {response.text[:200]}", response.status_code,
                permanent=response.status_code in PERMANENT_STATUSES,
            )
        return response.status_code


class Webhook(HttpTransport):
    pass


class Slack(HttpTransport):
    def body(self, document: dict) -> dict:
        return {"text": slack_text(document)}


TRANSPORTS = {AlertChannel.Kind.EMAIL: Email, AlertChannel.Kind.WEBHOOK: Webhook, AlertChannel.Kind.SLACK: Slack}


# --- deliveries ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str
    retry_in: float | None = None  # seconds until the next attempt, when one is scheduled


def retry_delay(attempts: int) -> float:
    """Exponential backoff: A2I_NOTIFY_RETRY_SECONDS after the first failure, doubling."""
    return settings.A2I_NOTIFY_RETRY_SECONDS * 2 ** (attempts - 1)


def deliver(delivery_id: int, *, now: datetime | None = None, retry: bool = True) -> Outcome | None:
    """Send one delivery if it is due and nobody else holds it; record the attempt.

    Returns None when there was nothing to do (sent already, not due, or claimed by another
    sender), else the Outcome: "sent"; "retrying" with the delay before the next attempt; or
    "failed" (a permanent error, the last attempt, or `retry=False`). Side effects: the
    delivery's row and its channel's health. Never raises for a failed send.
    """
    now = now or timezone.now()
    claimed = (
        AlertDelivery.objects.filter(pk=delivery_id, status__in=["pending", "retrying", "sending"])
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + timedelta(seconds=1)))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(status=AlertDelivery.Status.SENDING, claimed_until=now + CLAIM, attempts=F("attempts") + 1, last_attempt_at=now)
    )
    if not claimed:
        return None
    delivery = AlertDelivery.objects.select_related(
        "channel", "transition__rule", "transition__flow_definition"
    ).get(pk=delivery_id)
    channel = delivery.channel
    document = test_document(channel) if delivery.transition is None else alert_document(delivery.transition)
    try:
        http_status = TRANSPORTS[channel.kind](channel).send(document)
    except DeliveryError as exc:
        return _failed(delivery, exc, now, retry)
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        status=AlertDelivery.Status.SENT, http_status=http_status, error="", claimed_until=None, next_attempt_at=None
    )
    AlertChannel.objects.filter(pk=channel.pk).update(consecutive_failures=0, last_attempt_at=now, last_error="")
    return Outcome(AlertDelivery.Status.SENT)


def _failed(delivery: AlertDelivery, exc: DeliveryError, now: datetime, retry: bool) -> Outcome:
    final = exc.permanent or not retry or delivery.attempts >= settings.A2I_NOTIFY_MAX_ATTEMPTS
    delay = None if final else retry_delay(delivery.attempts)
    AlertDelivery.objects.filter(pk=delivery.pk).update(
        status=AlertDelivery.Status.FAILED if final else AlertDelivery.Status.RETRYING,
        http_status=exc.http_status, error=exc.message[:2000], claimed_until=None,
        next_attempt_at=None if final else now + timedelta(seconds=delay),
    )
    AlertChannel.objects.filter(pk=delivery.channel_id).update(
        consecutive_failures=F("consecutive_failures") + 1, last_attempt_at=now, last_error=exc.message[:2000]
    )
    logger.warning("delivery %s to %s failed (attempt %s): %s", delivery.pk, delivery.channel, delivery.attempts, exc.message)
    return Outcome(AlertDelivery.Status.FAILED if final else AlertDelivery.Status.RETRYING, delay)


def send_test(channel: AlertChannel) -> AlertDelivery:
    """Send a test notification to `channel` now, once (no retry); return the recorded delivery.

    Side effects: one AlertDelivery row (is_test), the channel's health. Waits for the channel
    (at most A2I_NOTIFY_TIMEOUT / EMAIL_TIMEOUT seconds).
    """
    delivery = AlertDelivery.objects.create(channel=channel, is_test=True, created_at=timezone.now())
    deliver(delivery.pk, retry=False)
    delivery.refresh_from_db()
    return delivery


def overdue_deliveries(now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries whose send was lost (due for a while and not sent, or claimed by a sender that
    died): the tick hands them to the workers again. Index alertdelivery_due. Read-only."""
    now = now or timezone.now()
    waiting = Q(status__in=["pending", "retrying"], next_attempt_at__lte=now - OVERDUE)
    abandoned = Q(status="sending", claimed_until__lt=now)
    return list(AlertDelivery.objects.filter(waiting | abandoned).order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
