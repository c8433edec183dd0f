"""GET /health/: no login, 200 when healthy, 503 when the database or the broker is down (the status
code is what load balancers read), nothing sensitive in the body."""

from datetime import timedelta

import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from loops.models import FlowDefinition, WorkerHeartbeat
from loops.services import health

from .conftest import free_port

BROKER = "redis://127.0.0.1:6379/3"


@pytest.fixture
def healthy(fleet, settings):
    settings.CELERY_BROKER_URL = BROKER
    return fleet


def test_healthy_is_200_with_every_part_and_no_login(healthy):
    response = Client().get("/health/")
    assert response.status_code == 200
    document = response.json()
    assert document["status"] == "ok"
    assert document["database"]["ok"] and document["broker"]["ok"]
    assert document["worker"]["ok"] and document["worker"]["heartbeat_age_seconds"] < 60
    region = document["sync"]["regions"]["us-east-1"]
    assert region["ok"] and region["flow_definitions"] == 2
    assert region["last_success"] == healthy.inv.last_sync_succeeded_at.isoformat()


def test_an_unreachable_broker_is_503(healthy, settings):
    port = free_port()
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"  # nothing listens there
    response = Client().get("/health/")
    assert response.status_code == 503
    document = response.json()
    assert document["status"] == "unhealthy" and document["broker"] == {"ok": False, "error": "OperationalError"}
    assert document["database"]["ok"]
    # Nothing sensitive: no URL, host or port of the broker.
    assert str(port) not in response.content.decode() and "redis://" not in response.content.decode()
    # The web container's healthcheck asks for database and broker only: still 503.
    assert Client().get("/health/?checks=database,broker").status_code == 503


def test_an_unreachable_database_is_503(healthy, monkeypatch):
    # A second connection to a port where no PostgreSQL listens, in place of the default one
    # for the health check only (the test's own connection must stay usable).
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    port = free_port()
    broken = type(connections["default"])({**connection.settings_dict, "PORT": str(port), "OPTIONS": {"connect_timeout": 2}}, "health")
    monkeypatch.setattr(health, "connection", broken)
    response = Client().get("/health/")
    assert response.status_code == 503
    document = response.json()
    assert document["database"] == {"ok": False, "error": "OperationalError"}
    assert document["worker"]["ok"] is False and document["sync"]["ok"] is False
    assert str(port) not in response.content.decode()
    broken.close()


def test_a_stale_worker_or_sync_is_503_unless_only_database_and_broker_are_asked(healthy):
    WorkerHeartbeat.objects.update(last_beat_at=timezone.now() - timedelta(minutes=10))
    assert Client().get("/health/").status_code == 503
    assert Client().get("/health/?checks=database,broker").status_code == 200
    assert Client().get("/health/?checks=worker").json()["worker"]["ok"] is False

    WorkerHeartbeat.objects.update(last_beat_at=timezone.now())
    FlowDefinition.objects.filter(pk=healthy.rec.pk).update(last_sync_succeeded_at=timezone.now() - timedelta(hours=1))
    response = Client().get("/health/")
    assert response.status_code == 503 and response.json()["sync"]["regions"]["us-east-1"]["ok"] is False
    assert Client().get("/health/?checks=database,broker,worker").status_code == 200


def test_an_unknown_check_is_a_400_that_names_the_known_ones(healthy):
    response = Client().get("/health/?checks=database,disk")
    assert response.status_code == 400 and "disk" in response.json()["error"] and "broker" in response.json()["error"]
