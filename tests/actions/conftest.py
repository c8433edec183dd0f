"""The action tests' world: A2I Local over HTTP (session server, reset per test), boto3
pointed at it through its standard environment variables, PostgreSQL, and three
users: an operator and a viewer (in the groups the data migration creates) and a
superuser.
"""

import importlib

import pytest
from django.contrib.auth.models import Group, Permission, User

from loops.models import FlowDefinition, HumanLoop
from loops.services.sync import sync_flow_definition
from tests.conftest import start_loops  # noqa: F401 - re-exported for the action tests

GROUPS = importlib.import_module("loops.migrations.0002_groups").GROUPS
PASSWORD = "correct horse battery staple"


@pytest.fixture
def aws(aws, settings):
    """The shared `aws` world with the service's own waits kept short; the behaviour is the same."""
    settings.A2I_ACTION_THROTTLE_BACKOFF_SECONDS = 0.02
    settings.A2I_ACTION_POLL_SECONDS = 0.05
    settings.A2I_ACTION_STOP_WAIT_SECONDS = 10
    aws.configure(stop_delay_seconds=0.2)
    return aws


def sync(fd: FlowDefinition) -> None:
    run = sync_flow_definition(fd.pk, full=True)
    assert run.outcome == "succeeded", run.error


def loops_named(names) -> list[HumanLoop]:
    by_name = {loop.name: loop for loop in HumanLoop.objects.filter(name__in=names).select_related("flow_definition")}
    return [by_name[name] for name in names]


def a2i_status(aws, name: str) -> str | None:
    """The loop's status in A2I (an independent client), None when A2I no longer knows it."""
    client = aws.client("sagemaker-a2i-runtime")
    try:
        return client.describe_human_loop(HumanLoopName=name)["HumanLoopStatus"]
    except client.exceptions.ResourceNotFoundException:
        return None


@pytest.fixture
def world(aws, flow_definition):
    """Loops in every status that matters, in A2I and synced: 3 InProgress, 2 Completed, 1 Failed."""
    fd = flow_definition
    in_progress = start_loops(aws, fd, 3, prefix="busy")
    completed = start_loops(aws, fd, 2, prefix="done")
    failed = start_loops(aws, fd, 1, prefix="bad")
    for name in completed:
        aws.complete(name, answer={"label": "cat"})
    aws.fail(failed[0], "ValidationError", "bad input")
    sync(fd)
    return {"fd": fd, "in_progress": in_progress, "completed": completed, "failed": failed}


def _group(name: str) -> Group:
    # The data migration created the groups; a transactional test elsewhere may have
    # flushed them, so rebuild them the same way if needed.
    group, _ = Group.objects.get_or_create(name=name)
    if not group.permissions.exists():
        group.permissions.set(Permission.objects.filter(content_type__app_label="loops", codename__in=GROUPS[name]))
    return group


def _user(username: str, *, group: str | None = None, superuser: bool = False) -> User:
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    if group:
        user.groups.add(_group(group))
    return user


@pytest.fixture
def operator(db) -> User:
    return _user("olivia-operator", group="operator")


@pytest.fixture
def viewer(db) -> User:
    return _user("victor-viewer", group="viewer")


@pytest.fixture
def superuser(db) -> User:
    return _user("sam-super", superuser=True)
