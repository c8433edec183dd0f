"""The control API under ``/_local/`` (not AWS's): move loops through their lifecycle in tests.

Routes (all JSON; errors are ``{"error": <code>, "message": <text>}`` with a clear 4xx):

- ``POST /_local/human-loops/{name}/complete``: body ``{"answerContent": {...}, "workerId": "w",
  "timeSpentInSeconds": 12.5}`` when it has an ``answerContent`` key, otherwise the whole body
  is the answerContent; ``?workerId=`` is accepted too (the body wins). Or ``{"humanAnswers":
  [{"answerContent": {...}, "workerId": ..., "timeSpentInSeconds": ...}, ...]}``: several
  workers' answers. -> 200 with the loop; 404 unknown loop, 409 not InProgress, 502
  output.json could not be written (loop stays InProgress).
- ``POST /_local/human-loops/{name}/fail``: body ``{"FailureCode": ..., "FailureReason": ...}``.
- ``POST /_local/reset``: drop all state, restore the options given at startup.
- ``GET /_local/health``: ``{"status": "ok", "loops": N, ...}``.
- ``GET|POST /_local/config``: read, or change live fields (config.LIVE_FIELDS; others -> 400).
- ``POST /_local/clock``: ``{"advance_seconds": N}`` moves the store's clock forward.

Each handler takes the server and the request (routes.py says which) and returns the body
of a 200 answer; a bad request raises ControlError, and the server answers an AwsError
from the store with ``control_error(exc)``.
"""

from __future__ import annotations

import json
import math
import typing
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from . import errors, output
from .config import LIVE_FIELDS, Options
from .handlers_runtime import describe_loop_body
from .request import Request
from .timestamps import parse_time

if TYPE_CHECKING:
    from .server import A2ILocalServer


class ControlError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_STATUS_FOR = {
    errors.ResourceNotFoundException: (404, "NotFound"),
    errors.InvalidLoopState: (409, "InvalidState"),
    errors.OutputWriteError: (502, "OutputWriteFailed"),
}


def control_error(exc: errors.AwsError) -> ControlError:
    """The control API's answer to an AwsError raised by the store (other codes: 400)."""
    for cls, (status, code) in _STATUS_FOR.items():
        if isinstance(exc, cls):
            return ControlError(status, code, exc.message)
    return ControlError(400, exc.code, exc.message)


def no_route(method: str, path: str) -> ControlError:
    return ControlError(404, "NotFound", f"No control route {method} {path}. See docs/a2i-local.md (control API).")


def _body(raw: bytes) -> dict:
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ControlError(400, "BadRequest", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ControlError(400, "BadRequest", "The request body must be a JSON object.")
    return data


MAX_HUMAN_ANSWERS = 3  # TaskCount's maximum


def complete_loop(app: A2ILocalServer, request: Request) -> dict:
    data = _body(request.body)
    if "humanAnswers" in data:
        return describe_loop_body(app.store.complete_loop(request.name, answers=_human_answers(data["humanAnswers"])))
    worker_id = (parse_qs(request.query).get("workerId") or [None])[0]
    spent = None
    if "answerContent" in data:
        answer = data["answerContent"]
        worker_id = data.get("workerId", worker_id)
        spent = data.get("timeSpentInSeconds")
        if spent is not None and (isinstance(spent, bool) or not isinstance(spent, (int, float)) or spent < 0):
            raise ControlError(400, "BadRequest", "timeSpentInSeconds must be a non-negative number.")
    else:
        answer = data
    if not isinstance(answer, dict):
        raise ControlError(400, "BadRequest", "answerContent must be a JSON object.")
    if worker_id is not None and not isinstance(worker_id, str):
        raise ControlError(400, "BadRequest", "workerId must be a string.")
    return describe_loop_body(
        app.store.complete_loop(request.name, answer, worker_id=worker_id, time_spent_seconds=spent))


def _human_answers(entries) -> list[output.WorkerAnswer]:
    """``{"humanAnswers": [{"answerContent": {...}, "workerId": "...", "timeSpentInSeconds": N,
    "acceptanceTime": "...", "submissionTime": "..."}, ...]}``: 1 to 3 answers from distinct
    workers; every key but answerContent is optional (answer_document fills the rest in)."""
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_HUMAN_ANSWERS:
        raise ControlError(400, "BadRequest", f"humanAnswers must be a list of 1 to {MAX_HUMAN_ANSWERS} answers.")
    answers, workers = [], set()
    for position, entry in enumerate(entries):
        where = f"humanAnswers[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("answerContent"), dict):
            raise ControlError(400, "BadRequest", f"{where} must be an object with an answerContent object.")
        worker_id = entry.get("workerId")
        if worker_id is not None and (not isinstance(worker_id, str) or not worker_id):
            raise ControlError(400, "BadRequest", f"{where}.workerId must be a non-empty string.")
        if worker_id is not None and worker_id in workers:
            raise ControlError(400, "BadRequest", f"{where}.workerId {worker_id!r} answered already: a task goes to distinct workers.")
        workers.add(worker_id)
        spent = entry.get("timeSpentInSeconds")
        if spent is not None and (isinstance(spent, bool) or not isinstance(spent, (int, float)) or spent < 0):
            raise ControlError(400, "BadRequest", f"{where}.timeSpentInSeconds must be a non-negative number.")
        times = {}
        for key in ("acceptanceTime", "submissionTime"):
            if entry.get(key) is not None:
                try:
                    times[key] = parse_time(entry[key], f"{where}.{key}")
                except errors.AwsError as exc:
                    raise ControlError(400, "BadRequest", exc.message) from None
        answers.append(output.WorkerAnswer(entry["answerContent"], worker_id, spent,
                                           times.get("acceptanceTime"), times.get("submissionTime")))
    return answers


def fail_loop(app: A2ILocalServer, request: Request) -> dict:
    data = _body(request.body)
    code, reason = data.get("FailureCode"), data.get("FailureReason")
    if code is None or reason is None:
        raise ControlError(400, "BadRequest", "Body must be {\"FailureCode\": ..., \"FailureReason\": ...}.")
    return describe_loop_body(app.store.fail_loop(request.name, code, reason))


def reset(app: A2ILocalServer, request: Request) -> dict:
    app.reset()
    return {"status": "reset"}


def health(app: A2ILocalServer, request: Request) -> dict:
    return app.health()


def read_config(app: A2ILocalServer, request: Request) -> dict:
    return app.options.snapshot()


def change_config(app: A2ILocalServer, request: Request) -> dict:
    apply_config(app.options, _body(request.body))
    return app.options.snapshot()


def advance_clock(app: A2ILocalServer, request: Request) -> dict:
    seconds = _body(request.body).get("advance_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ControlError(400, "BadRequest", "Body must be {\"advance_seconds\": <non-negative number>}.")
    app.store.advance_clock(seconds)
    return {"now": app.store.now().isoformat()}


_HINTS = typing.get_type_hints(Options)


def apply_config(options: Options, changes: dict) -> None:
    """Validate every field first, then apply them all (nothing changes on a bad request)."""
    converted = {}
    for name, value in changes.items():
        if name not in LIVE_FIELDS:
            raise ControlError(400, "BadRequest", f"Option '{name}' cannot be changed at runtime; "
                               f"live options: {', '.join(sorted(LIVE_FIELDS))}.")
        converted[name] = _convert(name, value, _HINTS[name])
    for name, value in converted.items():
        setattr(options, name, value)


def _convert(name: str, value, hint):
    nullable = type(None) in typing.get_args(hint)
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    if value is None:
        if nullable:
            return None
        raise ControlError(400, "BadRequest", f"Option '{name}' cannot be null.")
    if base is bool:
        if isinstance(value, bool):
            return value
    elif isinstance(value, bool):
        pass
    elif base is int and isinstance(value, int):
        if value >= 0:
            return value
    elif base is float and isinstance(value, (int, float)):
        if math.isfinite(value) and value >= 0 and not (name.endswith("_rate") and name != "workforce_start_rate" and value > 1):
            return float(value)
    raise ControlError(400, "BadRequest", f"Invalid value {value!r} for option '{name}' ({base.__name__}).")
