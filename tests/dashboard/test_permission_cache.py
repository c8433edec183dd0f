"""Each user's permissions are cached between requests (loops.services.permission_cache),
and any change of groups or permissions takes effect on the next request."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from loops.services import permission_cache
from tests.conftest import make_user, role_group

pytestmark = pytest.mark.django_db

PAGE = "/loops/"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def permission_queries(client, path=PAGE) -> tuple[int, int]:
    """(status, number of queries of the permission tables) of one request."""
    with CaptureQueriesContext(connection) as queries:
        status = client.get(path).status_code
    return status, sum('"auth_permission"' in q["sql"] for q in queries.captured_queries)


def test_a_second_request_reads_the_permissions_from_the_cache():
    assert permission_cache.enabled()  # the tests' cache is Redis
    user = make_user("pia-viewer", group="viewer")
    client = client_for(user)
    assert permission_queries(client) == (200, 2)  # the user's own and their groups'
    assert permission_queries(client) == (200, 0)
    generation, cached = cache.get(permission_cache.user_key(user.pk))
    assert generation == cache.get(permission_cache.generation_key())
    assert "loops.view_humanloop" in cached


def test_leaving_and_joining_a_group_takes_effect_on_the_next_request():
    user = make_user("quinn", group="viewer")
    client = client_for(user)
    assert client.get(PAGE).status_code == 200
    user.groups.remove(role_group("viewer"))
    assert client.get(PAGE).status_code == 403
    role_group("viewer").user_set.add(user)  # the other side of the same relation
    assert client.get(PAGE).status_code == 200


def test_a_permission_taken_from_the_group_or_given_to_the_user_takes_effect():
    user = make_user("rosa", group="viewer")
    client = client_for(user)
    view = Permission.objects.get(codename="view_humanloop", content_type__app_label="loops")
    assert client.get(PAGE).status_code == 200
    role_group("viewer").permissions.remove(view)
    assert client.get(PAGE).status_code == 403
    user.user_permissions.add(view)
    assert client.get(PAGE).status_code == 200
    user.user_permissions.clear()
    assert client.get(PAGE).status_code == 403


def test_deleting_a_group_drops_its_members_permissions():
    # Its join rows go by cascade, without m2m_changed: the delete itself must count.
    group = Group.objects.create(name="temporary-viewers")
    group.permissions.set(role_group("viewer").permissions.all())
    user = make_user("sam")
    user.groups.add(group)
    client = client_for(user)
    assert client.get(PAGE).status_code == 200
    group.delete()
    assert client.get(PAGE).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_change_committed_by_another_connection_takes_effect(viewer):
    # Outside a test transaction: the change commits at once, and the generation that
    # counts is the one started after the commit.
    client = client_for(viewer)
    assert client.get(PAGE).status_code == 200
    role_group("viewer").user_set.remove(viewer)
    assert client.get(PAGE).status_code == 403


def test_a_cache_that_does_not_answer_costs_the_queries_not_the_page(settings):
    user = make_user("tess", group="viewer")
    client = client_for(user)
    # A real Redis client against a port where nothing listens (the failure no running
    # Redis produces on demand).
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    assert permission_queries(client) == (200, 2)
    user.groups.clear()
    assert client.get(PAGE).status_code == 403


def test_without_a_shared_cache_nothing_is_cached(settings):
    settings.PERMISSION_CACHE_SECONDS = 0
    client = client_for(make_user("uma", group="viewer"))
    assert permission_queries(client) == (200, 2)
    assert permission_queries(client) == (200, 2)
