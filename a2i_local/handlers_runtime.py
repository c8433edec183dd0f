"""The five A2I runtime operations (rest-json): read parameters, validate, call the store, shape the reply.

Each handler takes the server and the request (routes.py says which) and returns the
response body: a JSON-able dict, or JSON text already built (ListHumanLoops). Errors are
raised as ``errors.AwsError`` and written on the wire by the server.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import validation as v
from .request import Request
from .store import Store
from .timestamps import format_iso_ms, parse_time

if TYPE_CHECKING:
    from .server import A2ILocalServer

MAX_INPUT_CONTENT = 3_145_728
# --no-strict-names: real A2I accepted mixed case (docs/a2i-local.md, behaviour notes §1.2).
RELAXED_NAME = "^[A-Za-z0-9](-*[A-Za-z0-9])*$"


def _check_name(checks: v.Violations, store: Store, name, field: str = "humanLoopName") -> None:
    pattern = v.HUMAN_LOOP_NAME if store.options.strict_names else RELAXED_NAME
    checks.string(name, field, min_len=1, max_len=63, pattern=pattern, required=True)


def describe_loop_body(loop: dict) -> dict:
    body = {
        "CreationTime": format_iso_ms(loop["CreationTimeMs"]),
        "HumanLoopStatus": loop["HumanLoopStatus"],
        "HumanLoopName": loop["HumanLoopName"],
        "HumanLoopArn": loop["HumanLoopArn"],
        "FlowDefinitionArn": loop["FlowDefinitionArn"],
        "HumanLoopOutput": {"OutputS3Uri": loop["OutputS3Uri"]},
    }
    if loop["FailureReason"] is not None:
        body["FailureReason"] = loop["FailureReason"]
    if loop["FailureCode"] is not None:
        body["FailureCode"] = loop["FailureCode"]
    return body


def start_human_loop(app: A2ILocalServer, request: Request) -> dict:
    store = app.store
    data = request.json()
    checks = v.Violations()
    name = data.get("HumanLoopName")
    arn = data.get("FlowDefinitionArn")
    _check_name(checks, store, name)
    checks.string(arn, "flowDefinitionArn", max_len=1024, pattern=v.FLOW_DEFINITION_ARN, required=True)
    loop_input = data.get("HumanLoopInput")
    content = None
    if checks.structure(loop_input, "humanLoopInput", required=True):
        content = loop_input.get("InputContent")
        if checks.string(content, "humanLoopInput.inputContent", max_len=MAX_INPUT_CONTENT, required=True):
            try:
                json.loads(content)
            except ValueError:
                checks.add(content, "humanLoopInput.inputContent",
                           "Member must be a string representation of a file in JSON format")
    classifiers = None
    attributes = data.get("DataAttributes")
    if checks.structure(attributes, "dataAttributes"):
        if attributes is not None:
            classifiers = attributes.get("ContentClassifiers")
            field = "dataAttributes.contentClassifiers"
            if checks.listing(classifiers, field, max_len=256, required=True):
                bad = [c for c in classifiers if c not in v.CONTENT_CLASSIFIERS]
                if bad:
                    checks.add("[" + ", ".join(map(str, classifiers)) + "]", field,
                               "Member must satisfy constraint: [Member must satisfy enum value set: ["
                               + ", ".join(v.CONTENT_CLASSIFIERS) + "]]")
    checks.raise_if_any()
    loop = store.start_human_loop(name, arn, content, classifiers)
    return {"HumanLoopArn": loop["HumanLoopArn"]}


def describe_human_loop(app: A2ILocalServer, request: Request) -> dict:
    checks = v.Violations()
    _check_name(checks, app.store, request.name)
    checks.raise_if_any()
    return describe_loop_body(app.store.describe_human_loop(request.name))


def stop_human_loop(app: A2ILocalServer, request: Request) -> dict:
    data = request.json()
    checks = v.Violations()
    name = data.get("HumanLoopName")
    _check_name(checks, app.store, name)
    checks.raise_if_any()
    app.store.stop_human_loop(name)
    return {}


def delete_human_loop(app: A2ILocalServer, request: Request) -> dict:
    checks = v.Violations()
    _check_name(checks, app.store, request.name)
    checks.raise_if_any()
    app.store.delete_human_loop(request.name)
    return {}


def list_human_loops(app: A2ILocalServer, request: Request) -> str:
    store, codec, query = app.store, app.codec, request.query_params()
    checks = v.Violations()
    arn = query.get("FlowDefinitionArn")
    checks.string(arn, "flowDefinitionArn", max_len=1024, pattern=v.FLOW_DEFINITION_ARN, required=True)
    # AWS documents no default order (docs/a2i-local.md, behaviour notes §2).
    sort_order = query.get("SortOrder") or "Descending"
    checks.enum(sort_order, "sortOrder", v.SORT_ORDERS)
    max_results = v.parse_int_param(query.get("MaxResults"), "maxResults")
    checks.integer(max_results, "maxResults", min_value=1, max_value=100)
    token = query.get("NextToken")
    checks.string(token, "nextToken", max_len=8192)
    checks.raise_if_any()
    raw_after, raw_before = query.get("CreationTimeAfter"), query.get("CreationTimeBefore")
    after_ms = parse_time(raw_after, "creationTimeAfter") if raw_after else None
    before_ms = parse_time(raw_before, "creationTimeBefore") if raw_before else None
    # The token is bound to the filters but not to MaxResults: the paginator changes it between pages.
    filters = (arn, after_ms, before_ms, sort_order)
    position = codec.decode(token, filters) if token else None
    summaries, next_position = store.list_human_loops(
        arn, after_ms=after_ms, before_ms=before_ms, sort_order=sort_order,
        max_results=max_results or 100, position=position)
    # Returned as JSON text: the store has serialised each summary already.
    body = '{"HumanLoopSummaries":[' + ",".join(summaries) + "]"
    if next_position is not None:
        body += ',"NextToken":"' + codec.encode(next_position, filters) + '"'
    return body + "}"
