"""A2I's EventBridge status-change events, parsed and validated (nothing is written here).

Both ways events arrive use these functions, so they accept and refuse exactly the same
input: the HTTPS endpoint (`parse_body`: one event, or a JSON array of them) and the SQS
consumer (`parse_message`: one event, or an SNS notification holding one). A refusal is
an InvalidEvent whose message names the field and says what is wrong with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

import ciso8601

DETAIL_TYPE = "SageMaker A2I HumanLoop Status Change"
SOURCE = "aws.sagemaker"
# EventBridge's own limit on an event; the endpoint refuses larger bodies (413).
MAX_EVENT_BYTES = 256 * 1024
# A2I emits events for these statuses only (docs/a2i-local.md, behaviour notes §4).
EVENT_STATUSES = ("Completed", "Failed", "Stopped")

# arn:<partition>:sagemaker:<region>:<account>:human-loop/<name> (and flow-definition/<name>).
_ARN = re.compile(r"^(arn:aws[a-z-]*:sagemaker:([a-z0-9-]{1,32}):(\d{12})):(human-loop|flow-definition)/([^/]{1,63})$")


class InvalidEvent(ValueError):
    """The input is not an A2I status-change event; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class StatusChangeEvent:
    """One "SageMaker A2I HumanLoop Status Change" event, validated."""

    id: str
    time: datetime  # A2I's clock, seconds precision
    loop_arn: str
    loop_name: str
    flow_definition_arn: str
    status: str
    creation_time: datetime
    failure_code: str
    failure_reason: str
    output_s3_uri: str


def parse_body(body: bytes) -> list[StatusChangeEvent]:
    """An HTTP body: one event (as an EventBridge API destination sends it) or a JSON array of events.

    Raises InvalidEvent for malformed JSON, an empty array, or any invalid event (the
    message names its position in the array).
    """
    data = _load_json(body)
    if isinstance(data, list):
        if not data:
            raise InvalidEvent("the array holds no event")
        return [parse_event(item, where=f"[{i}]") for i, item in enumerate(data)]
    return [parse_event(data)]


def parse_message(body: str) -> StatusChangeEvent:
    """One SQS message body: the event itself (an EventBridge rule target), or an SNS
    notification whose `Message` holds it. Raises InvalidEvent."""
    return parse_event(_load_json(body))


def parse_event(data, *, where: str = "") -> StatusChangeEvent:
    """Validate one decoded event (or SNS envelope) and return it. Raises InvalidEvent."""
    if isinstance(data, dict) and "detail-type" not in data and "Message" in data:
        # SNS fan-out wraps the event: {"Type": "Notification", "Message": "<event JSON>", ...}.
        message = data["Message"]
        if not isinstance(message, str):
            raise InvalidEvent(f"{where}Message: expected a string holding the event, got {_kind(message)}")
        return parse_event(_load_json(message, what=f"{where}Message"), where=f"{where}Message.")
    if not isinstance(data, dict):
        raise InvalidEvent(f"{where or 'the body'}: expected an event object, got {_kind(data)}")
    detail_type = _get(data, "detail-type", str, where)
    if detail_type != DETAIL_TYPE:
        raise InvalidEvent(f"{where}detail-type: expected {DETAIL_TYPE!r}, got {detail_type!r}")
    source = _get(data, "source", str, where)
    if source != SOURCE:
        raise InvalidEvent(f"{where}source: expected {SOURCE!r}, got {source!r}")
    event_id = _get(data, "id", str, where)
    if not 1 <= len(event_id) <= 64:
        raise InvalidEvent(f"{where}id: expected 1 to 64 characters, got {len(event_id)}")
    time = _timestamp(data, "time", where)

    detail = _get(data, "detail", dict, where)
    at = f"{where}detail."
    status = _get(detail, "humanLoopStatus", str, at)
    if status not in EVENT_STATUSES:
        raise InvalidEvent(f"{at}humanLoopStatus: unknown status {status!r} (A2I sends {', '.join(EVENT_STATUSES)})")
    loop_arn = _get(detail, "humanLoopArn", str, at)
    loop_match = _ARN.match(loop_arn)
    if not loop_match or loop_match.group(4) != "human-loop":
        raise InvalidEvent(f"{at}humanLoopArn: not a human loop ARN: {loop_arn[:200]!r}")
    loop_name = _get(detail, "humanLoopName", str, at)
    if loop_name != loop_match.group(5):
        raise InvalidEvent(f"{at}humanLoopName: {loop_name[:100]!r} is not the name in humanLoopArn")
    fd_arn = _get(detail, "flowDefinitionArn", str, at)
    fd_match = _ARN.match(fd_arn)
    if not fd_match or fd_match.group(4) != "flow-definition":
        raise InvalidEvent(f"{at}flowDefinitionArn: not a flow definition ARN: {fd_arn[:200]!r}")
    if fd_match.group(1) != loop_match.group(1):
        raise InvalidEvent(f"{at}flowDefinitionArn: not in the human loop's partition, region and account")
    output = _get(detail, "humanLoopOutput", dict, at, nullable=True) or {}
    return StatusChangeEvent(
        id=event_id,
        time=time,
        loop_arn=loop_arn,
        loop_name=loop_name,
        flow_definition_arn=fd_arn,
        status=status,
        creation_time=_timestamp(detail, "creationTime", at),
        failure_code=_text(detail, "failureCode", at, 32),
        failure_reason=_text(detail, "failureReason", at, 1024),
        output_s3_uri=_text(output, "outputS3Uri", f"{at}humanLoopOutput.", 1024) if output else "",
    )


def _load_json(text: bytes | str, *, what: str = "the body"):
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"{what}: malformed JSON ({exc})") from None


_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}


def _kind(value) -> str:
    return _KINDS.get(type(value), "a number")


def _get(obj: dict, key: str, kind: type, where: str, *, nullable: bool = False):
    if key not in obj:
        raise InvalidEvent(f"{where}{key}: missing")
    value = obj[key]
    if value is None and nullable:
        return None
    if not isinstance(value, kind):
        raise InvalidEvent(f"{where}{key}: expected {_KINDS[kind]}, got {_kind(value)}")
    return value


def _text(obj: dict, key: str, where: str, max_length: int) -> str:
    """An optional string field (A2I sends explicit nulls); "" when null or absent."""
    value = _get(obj, key, str, where, nullable=True) if key in obj else None
    if value is not None and len(value) > max_length:
        raise InvalidEvent(f"{where}{key}: longer than {max_length} characters")
    return value or ""


def _timestamp(obj: dict, key: str, where: str) -> datetime:
    text = _get(obj, key, str, where)
    try:
        moment = ciso8601.parse_datetime(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidEvent(f"{where}{key}: expected an ISO-8601 time with a time zone, got {text[:40]!r}")
    return moment
