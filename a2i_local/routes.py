"""Which handler answers which request: one table for the three APIs on A2I Local's port.

- The A2I runtime (rest-json) is routed by method and path. ``{name}`` in a pattern is
  one path segment, percent-decoded: the loop name.
- SageMaker (JSON 1.1) is ``POST /`` for every operation; ``X-Amz-Target:
  SageMaker.<Operation>`` names it.
- The control API (not AWS's) lives under ``/_local/``.

A request's API follows from its path alone, before any route matches: it decides the
format of every error, "no such route" included. A static path wins over a pattern, and
a method only matches its own routes: ``stop`` is a valid loop name, so
``GET /human-loops/stop`` describes the loop "stop" while ``POST /human-loops/stop`` is
StopHumanLoop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from . import errors
from . import handlers_local as control
from . import handlers_runtime as runtime
from . import handlers_sagemaker as sagemaker
from .request import Request

if TYPE_CHECKING:
    from .server import A2ILocalServer

RUNTIME = "runtime"
SAGEMAKER = "sagemaker"
CONTROL = "control"

SAGEMAKER_TARGET_PREFIX = "SageMaker."


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the table: a method and path pattern, and the handler that answers them."""

    method: str
    pattern: str
    handler: Callable[[A2ILocalServer, Request], dict | str]
    api: str
    operation: str | None = None  # the AWS operation: its fault bucket, and its X-Amz-Target for SageMaker


ROUTES = (
    # A2I runtime. The collection also answers with a trailing slash.
    Route("POST", "/human-loops", runtime.start_human_loop, RUNTIME, "StartHumanLoop"),
    Route("POST", "/human-loops/", runtime.start_human_loop, RUNTIME, "StartHumanLoop"),
    Route("GET", "/human-loops", runtime.list_human_loops, RUNTIME, "ListHumanLoops"),
    Route("GET", "/human-loops/", runtime.list_human_loops, RUNTIME, "ListHumanLoops"),
    Route("POST", "/human-loops/stop", runtime.stop_human_loop, RUNTIME, "StopHumanLoop"),
    Route("GET", "/human-loops/{name}", runtime.describe_human_loop, RUNTIME, "DescribeHumanLoop"),
    Route("DELETE", "/human-loops/{name}", runtime.delete_human_loop, RUNTIME, "DeleteHumanLoop"),
    # SageMaker flow definitions (JSON 1.1).
    Route("POST", "/", sagemaker.create_flow_definition, SAGEMAKER, "CreateFlowDefinition"),
    Route("POST", "/", sagemaker.describe_flow_definition, SAGEMAKER, "DescribeFlowDefinition"),
    Route("POST", "/", sagemaker.list_flow_definitions, SAGEMAKER, "ListFlowDefinitions"),
    Route("POST", "/", sagemaker.delete_flow_definition, SAGEMAKER, "DeleteFlowDefinition"),
    # Control API.
    Route("POST", "/_local/human-loops/{name}/complete", control.complete_loop, CONTROL),
    Route("POST", "/_local/human-loops/{name}/fail", control.fail_loop, CONTROL),
    Route("POST", "/_local/reset", control.reset, CONTROL),
    Route("GET", "/_local/health", control.health, CONTROL),
    Route("GET", "/_local/config", control.read_config, CONTROL),
    Route("POST", "/_local/config", control.change_config, CONTROL),
    Route("POST", "/_local/clock", control.advance_clock, CONTROL),
)


def _api_of(method: str, path: str) -> str:
    if path.startswith("/_local/"):
        return CONTROL
    if method == "POST" and path == "/":
        return SAGEMAKER
    return RUNTIME


def _index(table):
    """The table as three lookups, so that resolving a request is a dict lookup or a few string tests."""
    static, patterns, by_target = {}, {}, {}
    for route in table:
        if route.api != _api_of(route.method, route.pattern):
            raise ValueError(f"{route.method} {route.pattern} is not a path of the {route.api} API")
        if route.api == SAGEMAKER:
            by_target[SAGEMAKER_TARGET_PREFIX + route.operation] = route
        elif "{name}" in route.pattern:
            prefix, _, suffix = route.pattern.partition("{name}")
            # The segment is path[len(prefix):-len(suffix)]; the path must be at least as long as both.
            span = (len(prefix), -len(suffix) or None, len(prefix) + len(suffix))
            patterns.setdefault(route.method, []).append((prefix, suffix, span, route))
        else:
            static[(route.method, route.pattern)] = route
    return static, patterns, by_target


_STATIC, _PATTERNS, _BY_TARGET = _index(ROUTES)


def resolve(method: str, path: str, target: str) -> tuple[str, Route | None, str | None]:
    """``(api, route, name)`` for a request: its API, its route (None when nothing matches)
    and the route's percent-decoded ``{name}`` (None when it has none).

    The API follows from the path alone, so that a request without a route is still
    answered in its API's format (``no_route``).
    """
    # _api_of, inlined: this runs for every request.
    if path.startswith("/_local/"):
        api = CONTROL
    elif method == "POST" and path == "/":
        return SAGEMAKER, _BY_TARGET.get(target), None
    else:
        api = RUNTIME
    route = _STATIC.get((method, path))
    if route is not None:
        return api, route, None
    for prefix, suffix, (start, end, min_length), route in _PATTERNS.get(method, ()):
        # The segment between prefix and suffix: never holding "/", and empty only when the
        # pattern goes on after it (``/human-loops/`` is the collection, not a loop named "",
        # whereas the control API answers ``/_local/human-loops//complete`` like any unknown loop).
        if path.startswith(prefix) and path.endswith(suffix) and len(path) >= min_length:
            segment = path[start:end]
            if "/" not in segment and (segment or suffix):
                # unquote only when needed: it costs more than the rest of the routing.
                return api, route, unquote(segment) if "%" in segment else segment
    return api, None, None


def no_route(api: str, method: str, path: str, target: str) -> Exception:
    """The API's own answer to a request no route matches."""
    if api == CONTROL:
        return control.no_route(method, path)
    if api == RUNTIME:
        return errors.NotFoundRoute(f"No A2I operation matches {method} {path}.")
    if not target.startswith(SAGEMAKER_TARGET_PREFIX):
        return errors.UnknownOperationException(
            f"Unknown operation: X-Amz-Target '{target}'. A2I Local serves SageMaker.<Operation> "
            "targets for flow definitions only.")
    return errors.UnknownOperationException(
        f"A2I Local does not implement {target}; it supports " + ", ".join(_BY_TARGET) + ".")
