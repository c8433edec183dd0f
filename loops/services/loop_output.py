"""A Completed loop's output.json (the reviewers' answers), read from S3 and shaped for the loop page."""

from __future__ import annotations

from dataclasses import dataclass, field

from loops import a2i
from loops.models import HumanLoop, HumanLoopStatus


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

