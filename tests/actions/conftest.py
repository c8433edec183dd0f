"""The action tests' world: A2I Local over HTTP (session server, reset per test), boto3
pointed at it through its standard environment variables, PostgreSQL, and three
users: an operator and a viewer (in the groups the data migration creates) and a
superuser.
"""

import importlib
import uuid

import pytest
from django.contrib.auth.models import Group, Permission, User

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop
from loops.services.sync import discover_flow_definitions, sync_flow_definition

GROUPS = importlib.import_module("loops.migrations.0002_groups").GROUPS
PASSWORD = "correct horse battery staple"


@pytest.fixture
def aws(a2i, monkeypatch, settings):
    """A2I Local with boto3 configured exactly as in production: env vars, no code changes."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", a2i.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", a2i.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", a2i.s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", a2i.region)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.A2I_REGIONS = [a2i.region]
    # Keep the service's own waits short; the behaviour is the same.
    settings.A2I_ACTION_THROTTLE_BACKOFF_SECONDS = 0.02
    settings.A2I_ACTION_POLL_SECONDS = 0.05
    settings.A2I_ACTION_STOP_WAIT_SECONDS = 10
    a2i.configure(stop_delay_seconds=0.2)
    a2i_api.reset_clients()
    yield a2i
    a2i_api.reset_clients()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def flow_definition(aws, db) -> FlowDefinition:
    """One Active flow definition in A2I Local, discovered into the database."""
    arn = aws.create_flow_definition(unique("fd"))
    discover_flow_definitions([aws.region])
    return FlowDefinition.objects.get(arn=arn)


def start_loops(aws, fd: FlowDefinition, count: int, prefix: str = "loop") -> list[str]:
    """Start `count` loops through the real runtime API; returns their names."""
    client = aws.client("sagemaker-a2i-runtime")
    names = []
    for i in range(count):
        name = f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"
        client.start_human_loop(HumanLoopName=name, FlowDefinitionArn=fd.arn, HumanLoopInput={"InputContent": f'{{"n": {i}}}'})
        names.append(name)
    return names


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
