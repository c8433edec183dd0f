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
# Read at import time for parametrisation; the tests below check what the file says.
APP_SERVICES = [
    name for name, service in yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"].items()
    if service.get("build") == "."
]
# Variables of ours that must not leak from the test's shell into a service's settings.
OURS = re.compile(r"^(DEBUG|SECRET_KEY|ALLOWED_HOSTS|CSRF_TRUSTED_ORIGINS|DATABASE_URL|SECURE_.*|A2I_.*|REDIS_URL|CELERY_.*|DJANGO_.*)$")


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


def app_services(compose) -> list[str]:
    """The services that run the product's own image (the rest are postgres, redis...)."""
    return sorted(name for name, service in compose["services"].items() if service.get("build") == ".")


def listening_ports(service: dict) -> set[int]:
    """The ports a service's process listens on: from its command, or its image's default."""
    text = " ".join(" ".join(argv) for argv in commands_of(service)) if service.get("command") or service.get("build") else ""
    ports = {int(flag or bind) for flag, bind in re.findall(r"(?:--port|-p)\s+(\d+)|:(\d+)\b", text)}
    image = service.get("image", "").split(":")[0]
    return ports | {IMAGE_PORTS[image]} if image in IMAGE_PORTS else ports


IMAGE_PORTS = {"postgres": 5432, "redis": 6379}


def program_kind(argv: list[str]) -> str:
    """What a service runs: its program, or for Celery "celery worker" / "celery beat"."""
    return argv[0] if argv[0] != "celery" else f"celery {argv[3]}"


def test_the_product_runs_as_web_worker_and_beat(compose):
    # Whatever the services are called, one image serves the web, a Celery worker and beat.
    programs = [argv for name in app_services(compose) for argv in commands_of(compose["services"][name])]
    kinds = {program_kind(argv) for argv in programs}
    assert {"gunicorn", "celery worker", "celery beat"} <= kinds


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_service_command_exists_in_the_project(compose, name):
    programs = commands_of(compose["services"][name])
    assert programs
    for argv in programs:
        check_program(argv)


def test_every_url_in_the_environment_reaches_a_service_that_listens_there(compose):
    services = compose["services"]
    checked = 0
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            match = re.match(r"^[a-z]+://(?:[^@/]*@)?([^:/]+):(\d+)", str(value))
            if not match or match.group(1) in ("localhost", "127.0.0.1"):
                continue
            host, port = match.group(1), int(match.group(2))
            assert host in services, f"{name}: {key} points at {host}, which is not a service"
            listening = listening_ports(services[host])
            assert port in listening, f"{name}: {key} uses port {port}, {host} listens on {listening}"
            checked += 1
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
    assert checked >= len(app_services(compose)) * 3  # database, broker and A2I endpoints at least


def test_the_database_url_carries_the_postgres_services_credentials(compose):
    services = compose["services"]
    postgres_env = services["postgres"]["environment"]
    user, password, db = postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"], postgres_env["POSTGRES_DB"]
    for name in app_services(compose):
        assert services[name]["environment"]["DATABASE_URL"] == f"postgres://{user}:{password}@postgres:5432/{db}", name


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_each_services_environment_is_a_valid_production_configuration(compose, name):
    # The settings module refuses a bad value (a malformed boolean, no SECRET_KEY with
    # DEBUG off) and Django's system checks run on the result. (Not --deploy: the compose
    # stack serves plain HTTP on localhost, with SECURE_COOKIES=false on purpose.)
    env = {k: v for k, v in os.environ.items() if not OURS.match(k)}
    env.update({k: str(v) for k, v in compose["services"][name]["environment"].items()})
    env["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


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


def test_the_web_healthcheck_asks_the_health_endpoint_for_database_and_broker(compose):
    # urlopen raises on a 503, so the container turns unhealthy when /health/ says so.
    from django.urls import resolve

    test = compose["services"]["web"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    url = re.search(r"urlopen\('(http://[^']+)'", test[3]).group(1)
    parts = re.match(r"http://127\.0\.0\.1:(\d+)(/[^?]*)\?checks=([a-z,]+)$", url)
    assert int(parts.group(1)) in listening_ports(compose["services"]["web"])
    assert resolve(parts.group(2)).url_name == "health"
    assert set(parts.group(3).split(",")) == {"database", "broker"}
    compile(test[3], "healthcheck", "exec")


def test_the_worker_weighs_less_than_the_web_server_for_the_cpu(compose):
    # Containers are cgroups of their own, so WORKER_NICENESS cannot reach across them:
    # the worker's CPU weight is set below the web server's (Docker's default, 1024).
    services = compose["services"]
    by_kind = {}
    for name in app_services(compose):
        for argv in commands_of(services[name]):
            by_kind[program_kind(argv)] = services[name]
    assert by_kind["celery worker"].get("cpu_shares", 1024) < by_kind["gunicorn"].get("cpu_shares", 1024)
