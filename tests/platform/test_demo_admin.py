"""`create_demo_admin`: the login `make run` prints, idempotent, never with DEBUG off."""

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from loops.management.commands.create_demo_admin import DEMO_PASSWORD, DEMO_USERNAME

pytestmark = pytest.mark.django_db


def log_in(username, password):
    # django-axes counts every attempt against the request's address, so it needs the request.
    return authenticate(RequestFactory().post("/accounts/login/"), username=username, password=password)


@pytest.fixture(autouse=True)
def debug_on(settings):
    # pytest-django runs tests with DEBUG off; the command is for DEBUG-on machines.
    settings.DEBUG = True


def test_creates_a_superuser_that_can_log_in(capsys):
    call_command("create_demo_admin")
    out = capsys.readouterr().out
    assert f"login {DEMO_USERNAME} / {DEMO_PASSWORD}" in out and "LOCAL DEMO ONLY" in out
    user = log_in(DEMO_USERNAME, DEMO_PASSWORD)
    assert user is not None and user.is_superuser and user.is_staff


def test_running_twice_keeps_one_user_and_restores_the_password(capsys):
    call_command("create_demo_admin")
    user = get_user_model().objects.get(username=DEMO_USERNAME)
    user.set_password("changed")
    user.is_active = False
    user.save()
    call_command("create_demo_admin")
    assert "Demo admin reset" in capsys.readouterr().out
    assert get_user_model().objects.filter(username=DEMO_USERNAME).count() == 1
    assert log_in(DEMO_USERNAME, DEMO_PASSWORD) is not None


def test_joins_the_operator_group_when_it_exists():
    operator, _ = Group.objects.get_or_create(name="operator")
    call_command("create_demo_admin")
    assert operator.user_set.filter(username=DEMO_USERNAME).exists()


def test_refuses_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG is off"):
        call_command("create_demo_admin")
    assert not get_user_model().objects.filter(username=DEMO_USERNAME).exists()
