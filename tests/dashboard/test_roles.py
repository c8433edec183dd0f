"""Access follows roles, not just login: viewer, auditor, operator, and a user in no group."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from loops.models import LoopAction, LoopActionBatch
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def dashboard_pages(world) -> list[str]:
    return [
        "/",
        "/loops/",
        "/loops/?_export=csv",
        f"/loops/{world.inv_new.pk}/",
        "/flow-definitions/",
        f"/flow-definitions/{world.fd_inv.pk}/",
        "/sync/",
    ]


@pytest.fixture
def nobody(db) -> User:
    return User.objects.create_user("nora-nogroup", password=PASSWORD)


@pytest.fixture
def batch(world, operator) -> LoopActionBatch:
    batch = LoopActionBatch.objects.create(user=operator, action="stop", reason="secret reason", total=1)
    LoopAction.objects.create(batch=batch, user=operator, loop=world.inv_new, action="stop", reason="secret reason")
    return batch


def test_a_user_in_no_group_sees_one_page_asking_for_a_role_and_no_data(world, nobody):
    client = client_for(nobody)
    for url in dashboard_pages(world) + ["/actions/audit/"]:
        response = client.get(url)
        html = response.content.decode()
        assert response.status_code == 403, url
        assert "Ask an administrator" in html, url
        assert "inv-new" not in html and "invoices" not in html, url


def test_a_viewer_reads_the_dashboard_but_not_the_audit_log_nor_others_batches(world, viewer, batch):
    client = client_for(viewer)
    for url in dashboard_pages(world):
        assert client.get(url).status_code == 200, url
    assert client.get("/actions/audit/").status_code == 403
    assert client.get(f"/actions/batches/{batch.pk}/").status_code == 404
    html = client.get("/").content.decode()
    assert "/actions/audit/" not in html  # no link to a page they may not open


def test_an_auditor_reads_the_audit_log_and_every_batch(world, auditor, batch):
    client = client_for(auditor)
    html = client.get("/actions/audit/").content.decode()
    assert "secret reason" in html
    assert client.get(f"/actions/batches/{batch.pk}/").status_code == 200
    assert 'href="/actions/audit/"' in client.get("/").content.decode()  # in the navigation


def test_a_batch_shows_to_its_creator(world, operator, batch):
    assert client_for(operator).get(f"/actions/batches/{batch.pk}/").status_code == 200


def test_the_no_role_page_does_not_show_the_navigation(world, nobody):
    html = client_for(nobody).get("/").content.decode()
    assert 'aria-label="Main"' not in html
