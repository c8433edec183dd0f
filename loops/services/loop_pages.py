"""Helpers for the loop list and loop page that are not view plumbing.

- explain_empty_result: why a filtered list is empty (which filter excluded everything).
- read_loop_answers: a Completed loop's output.json, shaped for reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.http import QueryDict

from loops import a2i
from loops.filters import LoopFilter
from loops.models import HumanLoop, HumanLoopStatus

FILTER_LABELS = {
    "flow_definition": "flow definition",
    "status": "status",
    "window": "time window",
    "created_after": "created after",
    "created_before": "created before",
    "name": "name contains",
    "failure_code": "failure code",
}


def explain_empty_result(params: QueryDict, filterset: LoopFilter) -> list[str]:
    """Sentences saying which filters exclude everything. Read-only.

    Each check is an EXISTS query (stops at the first row), run only when the
    result is already empty.
    """
    reasons: list[str] = []
    if not HumanLoop.objects.exists():
        return ["No loops have been synced yet: the list fills in after the first sync of a flow definition."]
    active = filterset.active_filters()
    if not active:
        if not HumanLoop.objects.filter(deleted_upstream=False).exists():
            return ["Every loop known here was deleted upstream; tick “include loops deleted upstream” to see them."]
        return []
    for key in active:
        if key == "deleted":
            continue
        relaxed = params.copy()
        relaxed.pop(key, None)
        if key in ("created_after", "created_before", "window"):
            # Time filters combine: relaxing one alone rarely explains anything.
            for other in ("created_after", "created_before", "window"):
                relaxed.pop(other, None)
        other = LoopFilter(relaxed)
        if other.is_valid() and other.qs.exists():
            reasons.append(f"Loops match every other filter: the {FILTER_LABELS.get(key, key)} filter excludes them all.")
    if not params.get("deleted"):
        with_deleted = params.copy()
        with_deleted["deleted"] = "on"
        other = LoopFilter(with_deleted)
        if other.is_valid() and other.qs.exists():
            reasons.append("Some loops deleted upstream match: tick “include loops deleted upstream” to see them.")
    if not reasons:
        reasons.append("No loop matches these filters, nor any of them relaxed one at a time: try clearing the filters.")
    return reasons


@dataclass
class WorkerAnswer:
    worker_id: str
    submission_time: str | None
    acceptance_time: str | None
    time_spent_seconds: float | None
    # (key, value, is_scalar) so the template shows scalars inline and nests as pretty JSON.
    fields: list[tuple[str, object, bool]]
    worker_metadata: dict = field(default_factory=dict)


@dataclass
class LoopOutput:
    answers: list[WorkerAnswer]
    input_fields: list[tuple[str, object, bool]]
    raw: dict


def _fields(value) -> list[tuple[str, object, bool]]:
    if isinstance(value, dict):
        return [(str(k), v, _is_scalar(v)) for k, v in value.items()]
    return [("value", value, _is_scalar(value))]


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def read_loop_answers(loop: HumanLoop) -> LoopOutput:
    """Read `loop`'s output.json from S3 and shape it for the loop page.

    Raises loops.a2i.OutputUnavailable (missing object, no permission, bad URI,
    unreachable S3, not JSON). Network read; no database writes.
    """
    region = loop.flow_definition.region or a2i.region_of_arn(loop.arn)
    output = a2i.read_human_loop_output(loop.output_s3_uri, region)
    if not isinstance(output, dict):
        raise a2i.OutputUnavailable("The output is JSON but not an object; it cannot be shown as answers.")
    answers = []
    for entry in output.get("humanAnswers") or []:
        if not isinstance(entry, dict):
            continue
        spent = entry.get("timeSpentInSeconds")
        answers.append(
            WorkerAnswer(
                worker_id=str(entry.get("workerId") or "unknown worker"),
                submission_time=entry.get("submissionTime"),
                acceptance_time=entry.get("acceptanceTime"),
                time_spent_seconds=float(spent) if isinstance(spent, (int, float)) else None,
                fields=_fields(entry.get("answerContent") or {}),
                worker_metadata=entry.get("workerMetadata") or {},
            )
        )
    return LoopOutput(answers=answers, input_fields=_fields(output.get("inputContent")), raw=output)


def loop_output_expected(loop: HumanLoop) -> bool:
    return loop.status == HumanLoopStatus.COMPLETED and bool(loop.output_s3_uri)

