"""The "discover flow definitions now" button: operators only, rate-limited across web processes.

That the worker then runs the discovery is tested with a real worker in
tests/actions/test_worker.py.
"""

import pytest
from django.core.cache import cache
from django.test import Client

from loops.views.flow_definitions import DISCOVER_NOW_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_recent_discovery():
    cache.delete(DISCOVER_NOW_KEY)
    yield
    cache.delete(DISCOVER_NOW_KEY)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_operators_see_the_button_and_viewers_do_not(world, operator, viewer):
    assert "Discover flow definitions now" in client_for(operator).get("/flow-definitions/").content.decode()
    assert "Discover flow definitions now" not in client_for(viewer).get("/flow-definitions/").content.decode()


def test_a_viewer_or_auditor_cannot_trigger_a_discovery(world, viewer, auditor):
    for user in (viewer, auditor):
        response = client_for(user).post("/flow-definitions/discover/")
        assert response.status_code == 403 and "operator" in response.content.decode()
    assert cache.get(DISCOVER_NOW_KEY) is None


def test_the_button_is_rate_limited(world, operator, settings):
    client = client_for(operator)
    first = client.post("/flow-definitions/discover/", follow=True).content.decode()
    second = client.post("/flow-definitions/discover/", follow=True).content.decode()
    assert '<li class="success">Discovery queued' in first
    assert f'<li class="warning">A discovery was queued less than {settings.A2I_DISCOVER_NOW_INTERVAL} s ago' in second


def test_discovery_needs_post(world, operator):
    assert client_for(operator).get("/flow-definitions/discover/").status_code == 405
