"""Settings come from the environment: safe defaults, loud errors, nothing undocumented."""

import os
import re
import runpy
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "dashboard" / "settings.py"

# Variables that would leak from the developer's or CI's shell into the settings under test.
OURS = re.compile(
    r"^(DEBUG|SECRET_KEY|ALLOWED_HOSTS|CSRF_TRUSTED_ORIGINS|DATABASE_URL|DB_CONN_MAX_AGE|SECURE_.*|LOG_LEVEL|A2I_.*"
    r"|REDIS_URL|CELERY_.*|AWS_DEFAULT_REGION)$"
)


def load_settings(monkeypatch, **env) -> dict:
    """Execute dashboard/settings.py afresh under exactly these variables (others of ours unset)."""
    for name in list(os.environ):
        if OURS.match(name):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def production_env() -> dict[str, str]:
    return {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(60), "ALLOWED_HOSTS": "example.com"}


def test_defaults_are_safe_local_development(monkeypatch):
    settings = load_settings(monkeypatch)
    assert settings["DEBUG"] is True
    assert settings["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert settings["DATABASES"]["default"]["NAME"] == str(ROOT / "var" / "dashboard.sqlite3")
    assert settings["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0"
    assert settings["A2I_REGIONS"] == ["us-east-1"]
    assert settings["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "[::1]"]


@pytest.mark.parametrize("value", ["ture", "2", "enabled", "T"])
def test_malformed_boolean_is_a_clear_error(monkeypatch, value):
    with pytest.raises(ImproperlyConfigured, match=rf"DEBUG must be true or false, got '{value.lower()}'"):
        load_settings(monkeypatch, DEBUG=value)


@pytest.mark.parametrize("name", ["A2I_MAX_ATTEMPTS", "A2I_INCREMENTAL_SYNC_INTERVAL", "DB_CONN_MAX_AGE"])
def test_malformed_integer_is_a_clear_error(monkeypatch, name):
    with pytest.raises(ImproperlyConfigured, match=rf"{name} must be an integer, got '30s'"):
        load_settings(monkeypatch, **{name: "30s"})


def test_secret_key_required_when_debug_is_off(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is required when DEBUG is off"):
        load_settings(monkeypatch, DEBUG="false")


def test_empty_variable_means_default(monkeypatch):
    # `NAME=` lines copied from .env.example must not break anything.
    settings = load_settings(monkeypatch, DEBUG="", A2I_MAX_ATTEMPTS="", CELERY_BROKER_URL="", SECURE_SSL_REDIRECT="")
    assert settings["DEBUG"] is True
    assert settings["A2I_MAX_ATTEMPTS"] == 8
    assert settings["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/0"


def test_environment_overrides(monkeypatch):
    settings = load_settings(
        monkeypatch,
        DATABASE_URL="postgres://dash:pw@db.internal:5432/a2i",
        REDIS_URL="redis://cache:6379/3",
        A2I_REGIONS="us-east-1, eu-west-1",
        A2I_INCREMENTAL_SYNC_INTERVAL="45",
        **production_env(),
    )
    db = settings["DATABASES"]["default"]
    assert (db["ENGINE"], db["HOST"], db["NAME"], db["USER"]) == ("django.db.backends.postgresql", "db.internal", "a2i", "dash")
    assert settings["CELERY_BROKER_URL"] == settings["CELERY_RESULT_BACKEND"] == "redis://cache:6379/3"
    assert settings["A2I_REGIONS"] == ["us-east-1", "eu-west-1"]
    assert settings["CELERY_BEAT_SCHEDULE"]["sync-incremental"]["schedule"] == 45.0
    assert settings["ALLOWED_HOSTS"] == ["example.com"]
    assert settings["SESSION_COOKIE_SECURE"] and settings["SECURE_SSL_REDIRECT"]


def test_filesystem_broker_needs_no_server(monkeypatch, tmp_path):
    settings = load_settings(monkeypatch, CELERY_BROKER_URL="filesystem://", CELERY_BROKER_FOLDER=str(tmp_path))
    options = settings["CELERY_BROKER_TRANSPORT_OPTIONS"]
    # Producer and consumer share one queue folder, so web, worker and beat see the same messages.
    assert options["data_folder_in"] == options["data_folder_out"] == str(tmp_path / "queue")
    assert settings["CELERY_RESULT_BACKEND"] == f"file://{tmp_path / 'results'}"
    assert all((tmp_path / folder).is_dir() for folder in ("queue", "control", "results"))


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The browser fixture sets DJANGO_ALLOW_ASYNC_UNSAFE in this process (tests only);
    # a deployment never has it, and check --deploy rightly flags it.
    clean = {k: v for k, v in os.environ.items() if not OURS.match(k) and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_reports_nothing_with_production_settings():
    result = _manage("check", "--deploy", env=production_env())
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr and "WARNINGS" not in result.stdout


def test_manage_py_names_the_malformed_variable():
    result = _manage("check", env={"DEBUG": "yes please"})
    assert result.returncode != 0
    assert "ImproperlyConfigured: DEBUG must be true or false, got 'yes please'" in result.stderr


def _names_in(path: Path, pattern: str) -> set[str]:
    return set(re.findall(pattern, path.read_text()))


def test_env_example_lists_every_variable_we_read():
    documented = _names_in(ROOT / ".env.example", r"(?m)^#?\s*([A-Z][A-Z0-9_]+)=")
    read_by_settings = _names_in(SETTINGS, r"""\benv(?:bool|int|list)?\(\s*["']([A-Z][A-Z0-9_]+)["']""")
    read_by_settings |= _names_in(SETTINGS, r"""os\.environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]+)["']""")
    read_by_run = _names_in(ROOT / "scripts" / "run.py", r"""os\.environ\.get\(\s*["'](RUN_[A-Z0-9_]+)["']""")
    boto3_ours = {
        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME", "AWS_ENDPOINT_URL_SAGEMAKER",
        "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
    }
    # Sanity: the scan found the variables we know are there.
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "A2I_REGIONS"} <= read_by_settings
    assert {"RUN_WEB_PORT", "RUN_VAR_DIR"} <= read_by_run
    missing = (read_by_settings | read_by_run | boto3_ours) - documented
    assert not missing, f".env.example does not list: {sorted(missing)}"


def test_docs_configuration_table_lists_every_variable_of_env_example():
    documented = _names_in(ROOT / ".env.example", r"(?m)^#?\s*([A-Z][A-Z0-9_]+)=")
    # The full table lives in docs/configuration.md (the README keeps only the main settings).
    text = (ROOT / "docs" / "configuration.md").read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("|"))
    missing = {name for name in documented if f"`{name}`" not in table}
    assert not missing, f"docs/configuration.md's configuration table does not list: {sorted(missing)}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp+tls://alerts%40example.com:p%3Ass@smtp.example.com", {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend", "EMAIL_HOST": "smtp.example.com",
            "EMAIL_PORT": 587, "EMAIL_HOST_USER": "alerts@example.com", "EMAIL_HOST_PASSWORD": "p:ss",
            "EMAIL_USE_TLS": True, "EMAIL_USE_SSL": False}),
        ("smtps://mail.example.com", {"EMAIL_PORT": 465, "EMAIL_USE_SSL": True, "EMAIL_USE_TLS": False}),
        ("smtp://127.0.0.1:2525", {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": 2525, "EMAIL_USE_TLS": False}),
        ("file:///tmp/a2i-mail", {"EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend", "EMAIL_FILE_PATH": "/tmp/a2i-mail"}),
    ],
)
def test_email_url_sets_djangos_email_settings(monkeypatch, url, expected):
    settings = load_settings(monkeypatch, EMAIL_URL=url, EMAIL_HOST="ignored.example.com")
    assert {key: settings[key] for key in expected} == expected


def test_an_unknown_email_url_scheme_is_a_clear_error(monkeypatch):
    with pytest.raises(ImproperlyConfigured, match="EMAIL_URL scheme must be one of"):
        load_settings(monkeypatch, EMAIL_URL="imap://mail.example.com")
