"""The shared test world. Feature-specific fixtures live in each tests/<area>/conftest.py.

Browser fixtures are here because the dashboard and the action tests both use them.
"""

import os
import uuid
from pathlib import Path

import pytest

# A2I Local fixtures (a2i_server, a2i, a2i_client, sagemaker_client, s3_client).
pytest_plugins = ["a2i_local.testing"]

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
    standard environment variables, no code changes (a2i_local.testing provides `a2i`)."""
    from loops import a2i as a2i_api

    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", a2i.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", a2i.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", a2i.s3_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", a2i.region)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    settings.A2I_REGIONS = [a2i.region]
    a2i.configure(stop_delay_seconds=0)
    a2i_api.reset_clients()
    yield a2i
    a2i_api.reset_clients()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def flow_definition(aws, db):
    """One Active flow definition in A2I Local, discovered into the database."""
    from loops.models import FlowDefinition
    from loops.services.sync import discover_flow_definitions

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
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...): a worker process cannot open "
                    "this process's in-memory SQLite test database")
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _on_postgresql() -> bool:
    from django.conf import settings

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
