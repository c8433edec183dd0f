"""Run A2I Local (and moto's S3 server) in-process for tests, like moto's ThreadedMotoServer.

Context manager::

    with a2i_local_server(stop_delay_seconds=0) as a2i:
        arn = a2i.create_flow_definition("reviews")
        runtime = a2i.client("sagemaker-a2i-runtime")
        runtime.start_human_loop(...)
        a2i.complete("loop-1", answer={"label": "cat"})

pytest plugin (``pytest_plugins = ["a2i_local.testing"]`` in tests/conftest.py): session
fixture ``a2i_server`` (one server + S3 per session), function fixture ``a2i`` (state and
options reset before each test), and ``a2i_client``, ``sagemaker_client``, ``s3_client``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from .config import Options
from .endpoints import boto3_environ
from .server import A2ILocalServer

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class ControlAPIError(Exception):
    """A /_local/ call answered 4xx/5xx; ``status`` and ``body`` hold the reply."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


class A2ILocal:
    """Handle on a running A2I Local: URLs, real boto3 clients and control-API shortcuts."""

    def __init__(self, server: A2ILocalServer, s3_url: str, owns_s3: bool = False):
        self.server = server
        self._owns_s3 = owns_s3
        self.url = server.url
        self.s3_url = s3_url
        self.store = server.store
        self.options = server.options
        self.region = server.options.region
        self.account_id = server.options.account_id
        self._clients: dict = {}

    def environ(self, **kwargs) -> dict[str, str]:
        """boto3_environ() for this server and its S3."""
        return boto3_environ(self.url, self.s3_url, self.region, **kwargs)

    def client(self, service_name: str, **config_kwargs):
        """A real boto3 client for "sagemaker-a2i-runtime", "sagemaker" or "s3" against this server."""
        import boto3
        from botocore.config import Config

        endpoint = self.s3_url if service_name == "s3" else self.url
        # Accept a ready botocore Config (config=Config(...)) as well as its keyword arguments.
        given = config_kwargs.pop("config", None)
        if service_name == "s3":
            config_kwargs.setdefault("s3", {"addressing_style": "path"})
        config = Config(**config_kwargs)
        if given is not None:
            config = config.merge(given)
        return boto3.client(service_name, endpoint_url=endpoint, region_name=self.region,
                            config=config, **DUMMY_CREDENTIALS)

    def _cached(self, service_name: str):
        if service_name not in self._clients:
            self._clients[service_name] = self.client(service_name)
        return self._clients[service_name]

    def create_flow_definition(self, name: str, *, task_availability_lifetime_seconds: int = 86400,
                               output_path: str = "s3://a2i-local-output/out", timeout: float = 10.0,
                               task_count: int = 1) -> str:
        """Create a flow definition through the real sagemaker client and wait until it is Active."""
        sagemaker = self._cached("sagemaker")
        prefix = f"arn:aws:sagemaker:{self.region}:{self.account_id}"
        arn = sagemaker.create_flow_definition(
            FlowDefinitionName=name,
            HumanLoopConfig={
                "WorkteamArn": f"{prefix}:workteam/private-crowd/testers",
                "HumanTaskUiArn": f"{prefix}:human-task-ui/{name}-ui",
                "TaskTitle": f"Review {name}",
                "TaskDescription": "Review the item",
                "TaskCount": task_count,
                "TaskAvailabilityLifetimeInSeconds": task_availability_lifetime_seconds,
            },
            OutputConfig={"S3OutputPath": output_path},
            RoleArn=f"arn:aws:iam::{self.account_id}:role/a2i-tests",
        )["FlowDefinitionArn"]
        deadline = time.monotonic() + timeout
        while sagemaker.describe_flow_definition(FlowDefinitionName=name)["FlowDefinitionStatus"] != "Active":
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow definition {name} did not become Active within {timeout}s")
            time.sleep(0.02)
        return arn

    def control(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call the control API; raises ControlAPIError on a 4xx/5xx answer."""
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(self.url + path, data=data if method != "GET" else None, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ControlAPIError(exc.code, json.loads(exc.read() or b"{}")) from None

    def reset(self) -> None:
        """Empty A2I Local (and the moto S3 this handle started, so no output.json leaks between tests)."""
        self.control("POST", "/_local/reset")
        if self._owns_s3:
            request = urllib.request.Request(self.s3_url + "/moto-api/reset", data=b"", method="POST")
            with urllib.request.urlopen(request, timeout=30):
                pass

    def configure(self, **fields) -> dict:
        return self.control("POST", "/_local/config", fields)

    def complete(self, name: str, answer: dict | None = None, worker_id: str | None = None,
                 time_spent_seconds: float | None = None, *, human_answers: list[dict] | None = None) -> dict:
        """Complete a loop with one answer, or with ``human_answers`` (the control API's
        ``{"humanAnswers": [...]}``: answerContent, workerId, timeSpentInSeconds, ... each)."""
        if human_answers is not None:
            return self.control("POST", f"/_local/human-loops/{name}/complete", {"humanAnswers": human_answers})
        body: dict = {"answerContent": answer if answer is not None else {}}
        if worker_id is not None:
            body["workerId"] = worker_id
        if time_spent_seconds is not None:
            body["timeSpentInSeconds"] = time_spent_seconds
        return self.control("POST", f"/_local/human-loops/{name}/complete", body)

    def fail(self, name: str, code: str = "InternalError", reason: str = "Failed by the test") -> dict:
        return self.control("POST", f"/_local/human-loops/{name}/fail", {"FailureCode": code, "FailureReason": reason})

    def advance_clock(self, seconds: float) -> dict:
        return self.control("POST", "/_local/clock", {"advance_seconds": seconds})

    def health(self) -> dict:
        return self.control("GET", "/_local/health")

    def seed(self, flow_definitions: int, loops: int, random_seed: int = 0) -> list[str]:
        """Fast direct store seeding (no HTTP); returns the flow-definition ARNs."""
        return self.store.seed(flow_definitions, loops, random_seed)


@contextlib.contextmanager
def a2i_local_server(**option_overrides) -> Iterator[A2ILocal]:
    """Start moto's S3 server (unless ``s3_endpoint`` is given) and A2I Local on port 0."""
    moto_server = None
    if not option_overrides.get("s3_endpoint"):
        from moto.server import ThreadedMotoServer

        # werkzeug logs every S3 request at INFO; that is noise in test output.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto_server.start()
        host, port = moto_server.get_host_and_port()
        option_overrides["s3_endpoint"] = f"http://{host}:{port}"
    options = Options(**{"port": 0, **option_overrides})
    server = A2ILocalServer(options)
    server.start()
    try:
        yield A2ILocal(server, options.s3_endpoint, owns_s3=moto_server is not None)
    finally:
        server.stop()
        if moto_server is not None:
            moto_server.stop()


# -- pytest plugin ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def a2i_server():
    """One A2I Local + moto S3 for the whole test session."""
    with a2i_local_server() as handle:
        yield handle


@pytest.fixture
def a2i(a2i_server):
    """The session server with empty state and startup options (reset before each test)."""
    a2i_server.reset()
    yield a2i_server


@pytest.fixture
def a2i_client(a2i):
    """A boto3 sagemaker-a2i-runtime client (standard retries) against A2I Local."""
    return a2i.client("sagemaker-a2i-runtime", retries={"mode": "standard"})


@pytest.fixture
def sagemaker_client(a2i):
    return a2i.client("sagemaker")


@pytest.fixture
def s3_client(a2i):
    return a2i.client("s3")
