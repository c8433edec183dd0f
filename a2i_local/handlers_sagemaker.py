"""The four SageMaker flow-definition operations (JSON 1.1, ``X-Amz-Target: SageMaker.<Op>``).

Each handler takes the server and the request (routes.py says which) and returns the
response body as a JSON-able dict. SageMaker errors are all HTTP 400 with ``__type``;
timestamps are epoch seconds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from . import errors
from . import validation as v
from .records import FlowDefinitionRecord
from .request import Request
from .timestamps import parse_time

if TYPE_CHECKING:
    from .server import A2ILocalServer


def SageMakerViolations() -> v.Violations:  # noqa: N802 - reads like the class it builds
    """SageMaker's ValidationException travels as JSON 1.1 (__type, HTTP 400)."""
    return v.Violations(errors.SageMakerValidationException)


def _check_name(checks: v.Violations, name) -> None:
    checks.string(name, "flowDefinitionName", min_len=1, max_len=63, pattern=v.FLOW_DEFINITION_NAME, required=True)


def _check_human_loop_config(checks: v.Violations, config) -> None:
    if not checks.structure(config, "humanLoopConfig") or config is None:
        return
    p = "humanLoopConfig."
    checks.string(config.get("WorkteamArn"), p + "workteamArn", max_len=256, pattern=v.WORKTEAM_ARN, required=True)
    checks.string(config.get("HumanTaskUiArn"), p + "humanTaskUiArn", max_len=1024, pattern=v.HUMAN_TASK_UI_ARN,
                  required=True)
    checks.string(config.get("TaskTitle"), p + "taskTitle", min_len=1, max_len=128, pattern=v.TASK_TITLE, required=True)
    checks.string(config.get("TaskDescription"), p + "taskDescription", min_len=1, max_len=255,
                  pattern=v.TASK_DESCRIPTION, required=True)
    checks.integer(config.get("TaskCount"), p + "taskCount", min_value=1, max_value=3, required=True)
    checks.integer(config.get("TaskAvailabilityLifetimeInSeconds"), p + "taskAvailabilityLifetimeInSeconds",
                   min_value=1)
    checks.integer(config.get("TaskTimeLimitInSeconds"), p + "taskTimeLimitInSeconds", min_value=30)
    keywords = config.get("TaskKeywords")
    if checks.listing(keywords, p + "taskKeywords", min_len=1, max_len=5) and keywords:
        for i, keyword in enumerate(keywords):
            checks.string(keyword, f"{p}taskKeywords.{i + 1}.member", min_len=1, max_len=30, pattern=v.TASK_KEYWORD)
    price = config.get("PublicWorkforceTaskPrice")
    if checks.structure(price, p + "publicWorkforceTaskPrice") and price:
        amount = price.get("AmountInUsd")
        if checks.structure(amount, p + "publicWorkforceTaskPrice.amountInUsd") and amount:
            q = p + "publicWorkforceTaskPrice.amountInUsd."
            checks.integer(amount.get("Dollars"), q + "dollars", min_value=0, max_value=2)
            checks.integer(amount.get("Cents"), q + "cents", min_value=0, max_value=99)
            checks.integer(amount.get("TenthFractionsOfACent"), q + "tenthFractionsOfACent", min_value=0, max_value=9)


def create_flow_definition(app: A2ILocalServer, request: Request) -> dict:
    data = request.json()
    checks = SageMakerViolations()
    name = data.get("FlowDefinitionName")
    _check_name(checks, name)
    source = data.get("HumanLoopRequestSource")
    if checks.structure(source, "humanLoopRequestSource") and source is not None:
        checks.enum(source.get("AwsManagedHumanLoopRequestSource"),
                    "humanLoopRequestSource.awsManagedHumanLoopRequestSource", v.AWS_MANAGED_SOURCES, required=True)
    activation = data.get("HumanLoopActivationConfig")
    if checks.structure(activation, "humanLoopActivationConfig") and activation is not None:
        conditions = activation.get("HumanLoopActivationConditionsConfig")
        field = "humanLoopActivationConfig.humanLoopActivationConditionsConfig"
        if checks.structure(conditions, field, required=True) and conditions is not None:
            text = conditions.get("HumanLoopActivationConditions")
            if checks.string(text, field + ".humanLoopActivationConditions", max_len=10240, required=True):
                try:
                    json.loads(text)
                except ValueError:
                    checks.add(text, field + ".humanLoopActivationConditions", "Member must be a JSON document")
    _check_human_loop_config(checks, data.get("HumanLoopConfig"))
    out = data.get("OutputConfig")
    if checks.structure(out, "outputConfig", required=True) and out is not None:
        checks.string(out.get("S3OutputPath"), "outputConfig.s3OutputPath", max_len=1024, pattern=v.S3_URI,
                      required=True)
        checks.string(out.get("KmsKeyId"), "outputConfig.kmsKeyId", max_len=2048, pattern=v.KMS_KEY_ID)
    checks.string(data.get("RoleArn"), "roleArn", min_len=20, max_len=2048, pattern=v.ROLE_ARN, required=True)
    tags = data.get("Tags")
    if checks.listing(tags, "tags", max_len=50) and tags:
        for i, tag in enumerate(tags):
            field = f"tags.{i + 1}.member"
            if checks.structure(tag, field, required=True):
                checks.string(tag.get("Key"), field + ".key", min_len=1, max_len=128, pattern=v.TAG_PATTERN,
                              shown_pattern=v.TAG_PATTERN_SHOWN, required=True)
                checks.string(tag.get("Value"), field + ".value", max_len=256, pattern=v.TAG_PATTERN,
                              shown_pattern=v.TAG_PATTERN_SHOWN, required=True)
    checks.raise_if_any()
    spec = {key: data[key] for key in ("HumanLoopRequestSource", "HumanLoopActivationConfig", "HumanLoopConfig",
                                       "OutputConfig", "RoleArn") if data.get(key) is not None}
    record = app.store.flow_definitions.create(name, spec)
    return {"FlowDefinitionArn": record.arn}


def describe_flow_definition(app: A2ILocalServer, request: Request) -> dict:
    data = request.json()
    checks = SageMakerViolations()
    name = data.get("FlowDefinitionName")
    _check_name(checks, name)
    checks.raise_if_any()
    record, status = app.store.flow_definitions.describe(name)
    body = {"FlowDefinitionArn": record.arn, "FlowDefinitionName": record.name,
            "FlowDefinitionStatus": status, "CreationTime": record.creation_ms / 1000}
    body.update(json.loads(record.spec))
    return body


def _summary(record: FlowDefinitionRecord, status: str) -> dict:
    return {"FlowDefinitionName": record.name, "FlowDefinitionArn": record.arn,
            "FlowDefinitionStatus": status, "CreationTime": record.creation_ms / 1000}


def list_flow_definitions(app: A2ILocalServer, request: Request) -> dict:
    data = request.json()
    codec = app.codec
    checks = SageMakerViolations()
    sort_order = data.get("SortOrder") or "Descending"
    checks.enum(sort_order, "sortOrder", v.SORT_ORDERS)
    checks.integer(data.get("MaxResults"), "maxResults", min_value=1, max_value=100)
    token = data.get("NextToken")
    checks.string(token, "nextToken", max_len=8192)
    checks.raise_if_any()
    after = data.get("CreationTimeAfter")
    before = data.get("CreationTimeBefore")
    try:
        after_ms = parse_time(after, "creationTimeAfter") if after is not None else None
        before_ms = parse_time(before, "creationTimeBefore") if before is not None else None
        filters = ("flow-definitions", after_ms, before_ms, sort_order)
        position = codec.decode(token, filters) if token else None
    except errors.ValidationException as exc:
        raise errors.SageMakerValidationException(exc.message) from None
    items, next_position = app.store.flow_definitions.list_page(
        after_ms=after_ms, before_ms=before_ms, sort_order=sort_order,
        max_results=data.get("MaxResults") or 100, position=position)
    result = {"FlowDefinitionSummaries": [_summary(r, s) for r, s in items]}
    if next_position is not None:
        result["NextToken"] = codec.encode(next_position, filters)
    return result


def delete_flow_definition(app: A2ILocalServer, request: Request) -> dict:
    data = request.json()
    checks = SageMakerViolations()
    name = data.get("FlowDefinitionName")
    _check_name(checks, name)
    checks.raise_if_any()
    app.store.flow_definitions.delete(name)
    return {}

