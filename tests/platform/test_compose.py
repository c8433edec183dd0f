"""docker-compose.yml and the Dockerfile stay honest: every process they start exists here.

Docker has no engine on this machine, so instead of `docker compose up` this test parses
the files and checks each service's command against the project and its virtualenv.
"""

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXPECTED = {"postgres", "redis", "web", "worker", "beat", "a2i-local", "s3"}
APP_SERVICES = EXPECTED - {"postgres", "redis"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def commands_of(service: dict) -> list[list[str]]:
    """The argv of each program a service runs; `sh -c` scripts are split at && || ;."""
    command = service.get("command")
    if command is None:
        return [dockerfile_cmd()]
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] != ["sh", "-c"]:
        return [argv]
    programs = []
    for part in re.split(r"&&|\|\||;", argv[2]):
        words = shlex.split(part)
        if words and words[0] == "exec":
            words = words[1:]
        if words:
            programs.append(words)
    return programs


def dockerfile_cmd() -> list[str]:
    match = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    return yaml.safe_load(match.group(1))


def flags(argv: list[str]) -> list[str]:
    return [word.split("=")[0] for word in argv if word.startswith("--")]


def cli_help(*args: str) -> str:
    result = subprocess.run([sys.executable, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def check_program(argv: list[str]) -> None:
    """Fail unless the executable, the module and the subcommand of argv exist."""
    exe = argv[0]
    if exe in ("test", "sh"):
        return
    assert exe == "python" or (BIN / exe).exists() or shutil.which(exe), f"no executable {exe!r}"
    if exe == "python" and argv[1] == "-m":
        module = argv[2]
        if (ROOT / module).is_dir():
            assert (ROOT / module / "__main__.py").exists(), f"{module}/__main__.py missing"
            # Every flag given is one the CLI knows (its --help lists it).
            usage = cli_help("-m", module, argv[3])
            for flag in flags(argv):
                assert flag in usage, f"python -m {module} {argv[3]} has no flag {flag}"
        else:
            assert importlib.util.find_spec(module), f"module {module} not installed"
    elif exe == "python" and argv[1] == "manage.py":
        from django.core.management import get_commands

        assert argv[2] in get_commands(), f"manage.py has no command {argv[2]!r}"
    elif exe == "celery":
        assert argv[1:3] == ["-A", "dashboard"] and (ROOT / "dashboard" / "celery.py").exists()
        assert argv[3] in ("worker", "beat"), argv
    elif exe == "gunicorn":
        module = importlib.import_module(argv[1])
        assert callable(module.application)
    elif exe == "moto_server":
        assert importlib.util.find_spec("moto.server")


def test_every_expected_service_exists(compose):
    assert set(compose["services"]) == EXPECTED


def test_application_services_share_one_image(compose):
    images = {(compose["services"][name].get("build"), compose["services"][name].get("image")) for name in APP_SERVICES}
    assert images == {(".", "a2i-dashboard:latest")}


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_service_command_exists_in_the_project(compose, name):
    programs = commands_of(compose["services"][name])
    assert programs
    for argv in programs:
        check_program(argv)


def test_processes_are_the_ones_the_product_needs(compose):
    services = compose["services"]
    joined = {name: " ".join(" ".join(argv) for argv in commands_of(services[name])) for name in APP_SERVICES}
    assert "gunicorn dashboard.wsgi --bind 0.0.0.0:8000" in joined["web"]
    assert "celery -A dashboard worker" in joined["worker"]
    assert "celery -A dashboard beat" in joined["beat"]
    assert "python -m a2i_local serve --host 0.0.0.0 --port 8001" in joined["a2i-local"]
    assert "moto_server -H 0.0.0.0 -p 8002" in joined["s3"]


def test_environment_points_at_the_compose_services(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DEBUG"] == "false" and "SECRET_KEY" in env and "ALLOWED_HOSTS" in env
        assert env["DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["AWS_ENDPOINT_URL_SAGEMAKER_A2I_RUNTIME"] == env["AWS_ENDPOINT_URL_SAGEMAKER"] == "http://a2i-local:8001"
        assert env["AWS_ENDPOINT_URL_S3"] == "http://s3:8002"
        for dependency in services[name].get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    postgres_env = services["postgres"]["environment"]
    user, password, db = postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"], postgres_env["POSTGRES_DB"]
    assert services["web"]["environment"]["DATABASE_URL"] == f"postgres://{user}:{password}@postgres:5432/{db}"


def test_dockerfile_is_slim_non_root_and_copies_only_existing_files():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "collectstatic --noinput" in text
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1] not in ("root", "0")
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _destination = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    check_program(dockerfile_cmd())


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "var", ".git", ".env"} <= set(ignored)


def test_the_images_collectstatic_step_succeeds(tmp_path):
    # The Dockerfile runs collectstatic with DEBUG off: whitenoise's manifest storage fails
    # on a CSS url() that points at a missing file. Same step, into a temporary folder.
    script = (
        "import django; from django.conf import settings; django.setup(); "
        f"settings.STATIC_ROOT = {str(tmp_path)!r}; "
        "from django.core.management import call_command; call_command('collectstatic', '--noinput', verbosity=0)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(DEBUG="false", SECRET_KEY="collectstatic-only-build-time-placeholder", DJANGO_SETTINGS_MODULE="dashboard.settings")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "staticfiles.json").read_text())
    assert "css/app.css" in manifest["paths"]
