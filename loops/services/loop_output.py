"""A Completed loop's output.json, read from S3 while a person waits, shaped for the loop page.

The file is untrusted input: it is read with a ranged GetObject of at most
A2I_OUTPUT_MAX_BYTES (beyond that the page shows the file's metadata and a download
link instead), parsed by services.output_json (depth cap, schema check), and shown once:
each answer's fields, and for several answers a side-by-side comparison with the fields
that differ marked. The raw file is a download, never inlined a second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from loops import a2i
from loops.models import HumanLoop, HumanLoopStatus
from loops.services.output_json import Answer, OutputUnreadable, normalised_json, parse_output

# How many fields the side-by-side comparison lists (differing ones first).
COMPARISON_ROWS = 200

__all__ = ["OutputUnreadable", "loop_output_expected", "read_loop_answers"]


@dataclass
class WorkerAnswer:
    worker_id: str
    submission_time: datetime | None
    acceptance_time: datetime | None
    time_spent_seconds: float | None
    # (key, value, is_scalar) so the template shows scalars inline and nests as pretty JSON.
    fields: list[tuple[str, object, bool]]
    worker_sub: str = ""
    content_too_large: bool = False
    content_bytes: int = 0


@dataclass
class ComparisonRow:
    path: str
    values: list[str]
    differs: bool


@dataclass
class Comparison:
    workers: list[str]
    rows: list[ComparisonRow]
    differing: int
    left_out: int
    # All answers equal under the agreement rule; None when one was too large to compare.
    agree: bool | None


@dataclass
class LoopOutput:
    answers: list[WorkerAnswer]
    input_fields: list[tuple[str, object, bool]]
    size: int
    comparison: Comparison | None = None


@dataclass
class OutputTooLarge:
    """A file above A2I_OUTPUT_MAX_BYTES: what the page shows instead of its content."""

    size: int
    limit: int
    last_modified: datetime | None
    etag: str
    content_type: str


@dataclass
class _Flat:
    values: dict[str, str] = field(default_factory=dict)
    normalised: dict[str, str] = field(default_factory=dict)


def read_loop_answers(loop: HumanLoop) -> LoopOutput | OutputTooLarge:
    """Read `loop`'s output.json from S3 (fail-fast client) and shape it for the loop page.

    Raises loops.a2i.OutputUnavailable (missing object, no permission, bad URI, unreachable
    S3) or OutputUnreadable (not JSON, too deep, a structure it does not understand). A
    file larger than A2I_OUTPUT_MAX_BYTES is not parsed: OutputTooLarge is returned.
    No database writes.
    """
    region = loop.flow_definition.region or a2i.region_of_arn(loop.arn)
    limit = settings.A2I_OUTPUT_MAX_BYTES
    with a2i.open_human_loop_output(loop.output_s3_uri, region, interactive=True, max_bytes=limit) as obj:
        if obj.size is not None and obj.size > limit:
            return OutputTooLarge(obj.size, limit, obj.last_modified, obj.etag, obj.content_type)
        output = parse_output(obj.chunks(), content_max_bytes=limit, read_limit=limit, keep_input=True)
    answers = [
        WorkerAnswer(
            worker_id=answer.worker_id,
            submission_time=answer.submission_time,
            acceptance_time=answer.acceptance_time,
            time_spent_seconds=answer.time_spent_seconds,
            fields=_fields(answer.content or {}),
            worker_sub=answer.worker_sub,
            content_too_large=answer.content_too_large,
            content_bytes=answer.content_bytes,
        )
        for answer in output.answers
    ]
    comparison = compare_answers(output.answers) if len(output.answers) > 1 else None
    return LoopOutput(answers=answers, input_fields=_fields(output.input_content), size=output.bytes_read, comparison=comparison)


def compare_answers(answers: list[Answer]) -> Comparison:
    """The answers' fields side by side (flattened to paths such as `labels[0].name`), the
    differing ones first, each marked; at most COMPARISON_ROWS rows."""
    flats = [_flatten(answer.content) if answer.content is not None else None for answer in answers]
    paths: dict[str, None] = {}
    for flat in flats:
        if flat is not None:
            paths.update(dict.fromkeys(flat.values))
    rows = []
    for path in paths:
        normalised = {flat.normalised.get(path) for flat in flats if flat is not None}
        values = ["(too large to show)" if flat is None else flat.values.get(path, "—") for flat in flats]
        rows.append(ComparisonRow(path, values, differs=len(normalised) > 1))
    rows.sort(key=lambda row: not row.differs)  # stable: differing first, then file order
    comparable = [answer for answer in answers if not answer.content_too_large]
    agree = None if len(comparable) < len(answers) else len({answer.content_hash for answer in answers}) == 1
    return Comparison(
        workers=[answer.worker_id for answer in answers],
        rows=rows[:COMPARISON_ROWS],
        differing=sum(row.differs for row in rows),
        left_out=max(len(rows) - COMPARISON_ROWS, 0),
        agree=agree,
    )


def _flatten(content: dict) -> _Flat:
    flat = _Flat()
    stack: list[tuple[str, object]] = [("", content)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict) and value:
            stack.extend((f"{path}.{key}" if path else str(key), item) for key, item in reversed(list(value.items())))
        elif isinstance(value, list) and value:
            stack.extend((f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value))))
        else:
            flat.values[path or "(answer)"] = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            flat.normalised[path or "(answer)"] = normalised_json(value)
        if len(flat.values) > COMPARISON_ROWS * 5:
            break
    return flat


def _fields(value) -> list[tuple[str, object, bool]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [(str(k), v, _is_scalar(v)) for k, v in value.items()]
    return [("value", value, _is_scalar(value))]


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def loop_output_expected(loop: HumanLoop) -> bool:
    return loop.status == HumanLoopStatus.COMPLETED and bool(loop.output_s3_uri)
