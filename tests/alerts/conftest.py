"""Real receivers for the notification tests: an SMTP server (aiosmtpd, in-process) and HTTP
webhook receivers (http.server in a thread on port 0), plus a small world of rules."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from loops.models import AlertChannel, AlertRule
from tests.conftest import make_fd, make_loop


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Mailbox:
    """What the SMTP server received: (envelope sender, recipients, parsed message)."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server on 127.0.0.1; Django's SMTP backend points at it (pytest-django
    would otherwise swap in the in-memory backend)."""
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.DEFAULT_FROM_EMAIL = "alerts@a2i.test"
    yield mailbox
    controller.stop()


class Receiver:
    """An HTTP server that records every request and answers with the statuses it is given
    (one per request, in order; the last one repeats)."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body or b"null")})
                status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                reply = b"ok" if status < 300 else b"receiver says no"
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-part"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    """receivers(statuses=(200,)) -> a started Receiver; all stopped after the test."""
    started = []

    def start(statuses=(200,)) -> Receiver:
        started.append(Receiver(statuses))
        return started[-1]

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def no_hold(settings):
    """Resolve as soon as the condition clears (the hold is tested on its own)."""
    settings.A2I_ALERT_HOLD_SECONDS = 0


class Fleet:
    pass


@pytest.fixture
def fleet(db):
    """Two flow definitions with a 1-hour lifetime, synced a minute ago, and no loops yet;
    a live worker heartbeat. Tests add the loops their rule needs."""
    from loops.models import WorkerHeartbeat

    now = timezone.now()
    f = Fleet()
    f.now = now
    f.inv = make_fd("invoices", "us-east-1", lifetime=3600, now=now, last_sync_succeeded_at=now - timedelta(minutes=1))
    f.rec = make_fd("receipts", "us-east-1", lifetime=3600, now=now, last_sync_succeeded_at=now - timedelta(minutes=1))
    WorkerHeartbeat.objects.create(worker="celery@fleet", last_beat_at=now)
    return f


def add_loops(fd, status, count, *, age, now, prefix="loop", **extra):
    """`count` loops of `fd` in `status`, created `age` before `now`."""
    return [
        make_loop(fd, f"{prefix}-{fd.name}-{status.lower()}-{i}-{int(age.total_seconds())}", status, now - age, now=now, **extra)
        for i in range(count)
    ]


def make_rule(kind, *, fd=None, channels=(), **params) -> AlertRule:
    rule = AlertRule.objects.create(name=f"{kind} rule", kind=kind, flow_definition=fd, **params)
    rule.channels.set(channels)
    return rule


def webhook_channel(receiver, kind=AlertChannel.Kind.WEBHOOK, name="hook") -> AlertChannel:
    return AlertChannel.objects.create(name=name, kind=kind, target=receiver.url)
