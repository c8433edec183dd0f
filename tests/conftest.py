"""The one shared test world: browsers, A2I Local with boto3 pointed at it, users in
their groups, a database-only world of known loops, and an A2I-backed world of loops
in every status. Test files import the helpers they need from here.
"""

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.utils import timezone

from loops import a2i as a2i_api
from loops.models import FlowDefinition, HumanLoop, HumanLoopStatusChange, WorkerHeartbeat
from loops.permissions import GROUPS
from loops.services.discovery import discover_flow_definitions
from loops.services.stats import refresh_flow_definition_stats
from loops.services.sync import sync_flow_definition

# A2I Local fixtures (a2i_server, a2i, a2i_client, sagemaker_client, s3_client).
pytest_plugins = ["a2i_local.testing"]

# The page cache is keyed by a data version that the product's writers bump after they
# commit. Tests write rows with the ORM directly (and inside transactions that never
# commit), so for them it is off, here and in the servers they start; the tests of the
# cache itself (tests/dashboard/test_page_cache.py) and the `make run` tests turn it on.
os.environ["PAGE_CACHE_SECONDS"] = "0"


@pytest.fixture(autouse=True)
def _page_cache_off(settings):
    settings.PAGE_CACHE_SECONDS = 0

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Without these, chromium tries to reach Google's hosts on this offline machine.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SCREENSHOT_DIR = Path(os.environ.get("SCREENSHOT_DIR", Path(__file__).resolve().parent.parent / "screenshots"))


@pytest.fixture(scope="session")
def browser():
    """A real headless Debian chromium driven by Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an asyncio loop in this thread; the ORM calls that
    # tests make between page actions are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


def save_screenshot(page, directory: Path, name: str) -> Path:
    """Save a full-page screenshot and print its path, so CI logs show where it is."""
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


# --- A2I Local with boto3 pointed at it (sync, dashboard and action tests) -----------


@pytest.fixture
def aws(a2i, monkeypatch, settings):
    """A2I Local + moto S3, with boto3 configured exactly as in production: its own
    standard environment variables, no code changes (a2i_local.testing provides `a2i`).

    The actions' own waits are kept short; the behaviour is the same."""
    for key, value in a2i.environ().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.A2I_REGIONS = [a2i.region]
    settings.A2I_ACTION_THROTTLE_BACKOFF_SECONDS = 0.02
    settings.A2I_ACTION_POLL_SECONDS = 0.05
    settings.A2I_ACTION_STOP_WAIT_SECONDS = 10
    a2i.configure(stop_delay_seconds=0)
    a2i_api.reset_clients()
    yield a2i
    a2i_api.reset_clients()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def flow_definition(aws, db):
    """One Active flow definition in A2I Local, discovered into the database."""
    arn = aws.create_flow_definition(unique("fd"))
    discover_flow_definitions([aws.region])
    return FlowDefinition.objects.get(arn=arn)


def start_loops(aws, fd, count: int, prefix: str = "loop") -> list[str]:
    """Start `count` loops through the real runtime API; returns their names."""
    client = aws.client("sagemaker-a2i-runtime")
    names = []
    for i in range(count):
        name = f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"
        client.start_human_loop(
            HumanLoopName=name, FlowDefinitionArn=fd.arn, HumanLoopInput={"InputContent": f'{{"n": {i}}}'}
        )
        names.append(name)
    return names


def database_url_for_subprocesses() -> str:
    """The test database as a URL that another process (a real Celery worker) can open.

    pytest-django's SQLite test database lives in this process's memory, so tests that
    start a worker need PostgreSQL; on SQLite they are skipped with this reason.
    """
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): a worker process cannot open "
                    "this process's in-memory SQLite test database")
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _on_postgresql() -> bool:
    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


# Tests that share the test database with another process or hold several connections
# at once (a management command run as a subprocess, parallel sync writers, two syncs
# racing, a live server polled by a browser while the test writes). pytest-django's
# SQLite test database lives in memory, where that fails with "database table is
# locked"; `make test` uses PostgreSQL whenever one answers.
requires_postgresql = pytest.mark.skipif(
    not _on_postgresql(),
    reason="needs PostgreSQL (DATABASE_URL=postgres://...): shares the test database across "
    "processes or concurrent connections, which the in-memory SQLite test database cannot",
)


# --- users, in the groups of loops.permissions ---------------------------------------

PASSWORD = "correct horse battery staple"


def role_group(name: str) -> Group:
    # The data migration created the groups; a transactional test elsewhere may have
    # flushed them, so rebuild them the same way if needed.
    group, _ = Group.objects.get_or_create(name=name)
    if not group.permissions.exists():
        group.permissions.set(Permission.objects.filter(content_type__app_label="loops", codename__in=GROUPS[name]))
    return group


def make_user(username: str, *, group: str | None = None, superuser: bool = False) -> User:
    """A user who can log in with PASSWORD; staff (the admin lets each see what its group allows)."""
    if superuser:
        return User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    if group:
        user.groups.add(role_group(group))
    return user


@pytest.fixture
def operator(db) -> User:
    return make_user("olivia-operator", group="operator")


@pytest.fixture
def viewer(db) -> User:
    return make_user("victor-viewer", group="viewer")


@pytest.fixture
def auditor(db) -> User:
    return make_user("ada-auditor", group="auditor")


@pytest.fixture
def superuser(db) -> User:
    return make_user("sam-super", superuser=True)


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


# --- a database-only world of known loops (dashboard pages, overview figures) -----------

ACCOUNT = "123456789012"
XSS = "<script>alert(1)</script>"


def make_fd(name, region, *, lifetime, now, **extra):
    return FlowDefinition.objects.create(
        arn=f"arn:aws:sagemaker:{region}:{ACCOUNT}:flow-definition/{name}",
        name=name,
        region=region,
        status="Active",
        creation_time=now - timedelta(days=60),
        output_s3_path=f"s3://out-{name}/results",
        task_title=f"Review {name}",
        task_count=1,
        task_availability_lifetime_seconds=lifetime,
        task_time_limit_seconds=600,
        **extra,
    )


def make_loop(fd, name, status, created, *, now, deleted=False, failure_code="", failure_reason="", output=True):
    region = fd.region
    return HumanLoop.objects.create(
        flow_definition=fd,
        name=name,
        arn=f"arn:aws:sagemaker:{region}:{ACCOUNT}:human-loop/{name}",
        status=status,
        creation_time=created,
        failure_code=failure_code,
        failure_reason=failure_reason,
        output_s3_uri=f"{fd.output_s3_path}/{fd.name}/{created:%Y/%m/%d/%H/%M/%S}/{name}/output.json" if output else "",
        first_seen_at=created,
        last_seen_at=now,
        status_changed_at=now,
        deleted_upstream=deleted,
        deleted_upstream_at=now if deleted else None,
    )


class World:
    pass


@pytest.fixture
def world(db):
    """A small known world of flow definitions and loops, written straight to the database.

    Times are relative to one fixed `now` (the real clock at fixture time), so window
    filters and "age" figures are predictable.

        fd_inv      invoices  us-east-1  lifetime 1 h   last sync 1 min ago
          inv-new       InProgress  created now-30 min
          inv-old       InProgress  created now-50 min  (83 % of lifetime: near expiry)
          inv-done      Completed   created now-3 h     InProgress -> Completed observed now-2 h
          inv-fail      Failed      created now-2 d     Expired, reason "<script>alert(1)</script>"
        fd_rec      receipts  us-east-1  lifetime 1 d   never synced
          rec-done      Completed   created now-10 d    first seen Completed (no observed transition)
          rec-stopped   Stopped     created now-40 d
          rec-gone      Completed   created now-5 h     deleted upstream
        fd_inv_eu   invoices  eu-west-1  lifetime 1 d   last sync failing
          inv-eu        InProgress  created now-20 h
    """
    now = timezone.now()
    w = World()
    w.now = now
    w.fd_inv = make_fd("invoices", "us-east-1", lifetime=3600, now=now, last_sync_succeeded_at=now - timedelta(minutes=1))
    w.fd_rec = make_fd("receipts", "us-east-1", lifetime=86400, now=now)
    w.fd_inv_eu = make_fd(
        "invoices", "eu-west-1", lifetime=86400, now=now,
        last_sync_succeeded_at=now - timedelta(minutes=2), last_sync_error="AccessDenied: not allowed to list",
    )
    w.inv_new = make_loop(w.fd_inv, "inv-new", "InProgress", now - timedelta(minutes=30), now=now)
    w.inv_old = make_loop(w.fd_inv, "inv-old", "InProgress", now - timedelta(minutes=50), now=now)
    w.inv_done = make_loop(w.fd_inv, "inv-done", "Completed", now - timedelta(hours=3), now=now)
    w.inv_fail = make_loop(
        w.fd_inv, "inv-fail", "Failed", now - timedelta(days=2), now=now, failure_code="Expired", failure_reason=XSS
    )
    w.rec_done = make_loop(w.fd_rec, "rec-done", "Completed", now - timedelta(days=10), now=now)
    w.rec_stopped = make_loop(w.fd_rec, "rec-stopped", "Stopped", now - timedelta(days=40), now=now)
    w.rec_gone = make_loop(w.fd_rec, "rec-gone", "Completed", now - timedelta(hours=5), now=now, deleted=True)
    w.inv_eu = make_loop(w.fd_inv_eu, "inv-eu", "InProgress", now - timedelta(hours=20), now=now)

    HumanLoopStatusChange.objects.create(loop=w.inv_done, from_status="", to_status="InProgress", observed_at=now - timedelta(hours=3))
    HumanLoopStatusChange.objects.create(
        loop=w.inv_done, from_status="InProgress", to_status="Completed", observed_at=now - timedelta(hours=2)
    )
    HumanLoopStatusChange.objects.create(loop=w.rec_done, from_status="", to_status="Completed", observed_at=now - timedelta(days=1))
    WorkerHeartbeat.objects.create(worker="celery@test", last_beat_at=now - timedelta(seconds=5))
    for fd in (w.fd_inv, w.fd_rec, w.fd_inv_eu):
        refresh_flow_definition_stats(fd)
    return w


def names(response) -> list[str]:
    """Loop names in the rendered table, in order."""
    table = response.context["table"]
    return [row.record.name for row in table.paginated_rows]


ANSWER = {"label": "invoice", "confidence": 0.93, "fields": {"total": "12.50", "currency": "EUR"}}
INPUT = {"document": "s3://docs/invoice-17.pdf", "model_score": 0.41}


def completed_loop_via_a2i(aws, *, fd_name="dash-fd", loop_name="dash-loop-1", answer=ANSWER, input_content=INPUT):
    """Create a flow definition in A2I Local, start a loop, complete it (output.json really
    written to S3), then import everything with the real discovery and sync services."""
    arn = aws.create_flow_definition(fd_name, task_availability_lifetime_seconds=7200)
    aws.client("sagemaker-a2i-runtime").start_human_loop(
        HumanLoopName=loop_name, FlowDefinitionArn=arn, HumanLoopInput={"InputContent": json.dumps(input_content)}
    )
    aws.complete(loop_name, answer=answer, worker_id="worker-7", time_spent_seconds=42.5)
    discover_flow_definitions([aws.region])
    fd = FlowDefinition.objects.get(arn=arn)
    run = sync_flow_definition(fd.pk, full=True)
    assert run.outcome == "succeeded", run.error
    return HumanLoop.objects.get(flow_definition=fd, name=loop_name)


# --- an A2I-backed world: loops in A2I Local, synced (actions) ------------------------------


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
def a2i_world(aws, flow_definition):
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


