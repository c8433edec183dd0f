"""output.json as untrusted input: streamed, size-capped, depth-capped and schema-checked.

One parser for the loop page and the answers ingestion. The file is read as a stream of
JSON events (ijson's C backend), never whole: an answerContent larger than the caller's
cap keeps its metadata and a "too large" marker, nesting deeper than MAX_DEPTH and any
structural surprise (humanAnswers of the wrong type, a timestamp out of range, ...) raise
OutputUnreadable with a sentence saying what and where. A caller never sees a
RecursionError, an OverflowError or a half-built document.

What is checked (docs/a2i-local.md, behaviour notes §3, gives the format):

    top level      an object; humanAnswers an array of at most MAX_ANSWERS objects;
                   flowDefinitionArn and humanLoopName strings when present; inputContent
                   any JSON (kept only when asked for); other keys skipped
    each answer    answerContent an object; workerId a string of 1 to 256 characters;
                   submissionTime a timestamp; acceptanceTime a timestamp or absent/null;
                   timeSpentInSeconds a finite number >= 0 or absent/null;
                   workerMetadata.identityData.sub / identityProviderType strings when present
    timestamps     ISO-8601, between 1970 and 2200 once converted to UTC (no offset: UTC)

Side effects: none; reads the chunks it is given.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import ciso8601
import ijson

MAX_DEPTH = 64
MAX_ANSWERS = 50
MAX_ID_LENGTH = 256
MAX_TIMESTAMP_LENGTH = 64
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# What the ingestion reads of one file at most, whatever its answers' sizes: a single JSON
# string is one token, held whole while it is read, so the stream needs an outer bound too.
READ_LIMIT = 64 * 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")


class OutputUnreadable(Exception):
    """The file is not an output.json this dashboard understands; the message says why."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One humanAnswers entry, checked and typed."""

    index: int
    worker_id: str
    worker_sub: str
    identity_provider: str
    acceptance_time: datetime | None
    submission_time: datetime
    time_spent_seconds: float | None
    # None when the answerContent was larger than the cap (content_too_large).
    content: dict | None
    # The compact JSON size of the content (an estimate when it was too large).
    content_bytes: int
    content_too_large: bool
    # sha256 of normalised_json(content); "" when the content was too large.
    content_hash: str


@dataclass(slots=True)
class Output:
    flow_definition_arn: str
    human_loop_name: str
    answers: list[Answer]
    # Only with parse_output(keep_input=True); None when the file has none.
    input_content: object = None
    bytes_read: int = 0
    extra_keys: list[str] = field(default_factory=list)


def parse_output(
    chunks: Iterable[bytes],
    *,
    content_max_bytes: int,
    read_limit: int = READ_LIMIT,
    keep_input: bool = False,
) -> Output:
    """Parse an output.json given as chunks of bytes; raises OutputUnreadable.

    `content_max_bytes`: an answerContent larger than this is not kept (marked too large).
    `read_limit`: reading more bytes than this fails the whole file.
    `keep_input`: keep inputContent (the loop page shows it; the ingestion does not).
    """
    reader = _ChunkReader(chunks, read_limit)
    events = ijson.basic_parse(reader, use_float=True)
    try:
        output = _Parser(events, content_max_bytes, keep_input).document()
        # Anything after the top-level value is a syntax error; ijson says so on the next read.
        for _event in events:
            raise OutputUnreadable("there is more JSON after the top-level object.")
    except ijson.IncompleteJSONError as exc:
        if reader.exceeded:
            raise OutputUnreadable(f"it is larger than {read_limit:,} bytes, more than the dashboard reads.") from None
        raise OutputUnreadable(f"it is not valid JSON ({_short(exc)}).") from None
    except (ijson.JSONError, UnicodeDecodeError) as exc:
        raise OutputUnreadable(f"it is not valid JSON ({_short(exc)}).") from None
    output.bytes_read = reader.bytes_read
    return output


def normalised_json(value) -> str:
    """The agreement rule's form of a value: keys sorted, no insignificant whitespace, each
    string trimmed with inner runs of whitespace made one space, integral floats as integers.
    Two answers agree when their answerContent has the same normalised JSON."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value) -> str:
    return hashlib.sha256(normalised_json(value).encode()).hexdigest()


def _normalise(value):
    if isinstance(value, str):
        return _SPACES.sub(" ", value).strip()
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


# --- reading -------------------------------------------------------------------------


class _ChunkReader:
    """A file-like over an iterator of byte chunks, for ijson, that stops at `limit` bytes."""

    def __init__(self, chunks: Iterable[bytes], limit: int):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._limit = limit
        self.bytes_read = 0
        self.exceeded = False

    def read(self, size: int = -1) -> bytes:
        # ijson first reads 0 bytes to learn whether the file gives bytes or text.
        if self.exceeded or size == 0:
            return b""
        for chunk in self._chunks:
            if not chunk:
                continue
            self.bytes_read += len(chunk)
            if self.bytes_read > self._limit:
                # End the stream here: ijson then reports incomplete JSON, which
                # parse_output turns into "larger than the limit".
                self.exceeded = True
                return b""
            return chunk
        return b""


# --- the parser ----------------------------------------------------------------------

_SCALARS = frozenset({"string", "number", "boolean", "null"})
_TYPE_NAMES = {
    "start_map": "an object",
    "start_array": "a list",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


class _TooLarge(Exception):
    pass


class _Parser:
    """Recursive descent over ijson's basic events; depth is counted on every container."""

    def __init__(self, events, content_max_bytes: int, keep_input: bool):
        self.events = events
        self.content_max_bytes = content_max_bytes
        self.keep_input = keep_input

    def next(self) -> tuple[str, object]:
        try:
            return next(self.events)
        except StopIteration:
            raise OutputUnreadable("the file ends before the JSON does.") from None

    def document(self) -> Output:
        event, _value = self.next()
        if event != "start_map":
            raise OutputUnreadable(f"it is {_TYPE_NAMES.get(event, event)}, not a JSON object.")
        output = Output(flow_definition_arn="", human_loop_name="", answers=[])
        seen_answers = False
        while True:
            event, key = self.next()
            if event == "end_map":
                break
            if key == "humanAnswers":
                if seen_answers:
                    raise OutputUnreadable("humanAnswers appears twice.")
                seen_answers = True
                output.answers = self.answers()
            elif key in ("flowDefinitionArn", "humanLoopName"):
                value = self.string(key, 2048)
                if key == "flowDefinitionArn":
                    output.flow_definition_arn = value
                else:
                    output.human_loop_name = value
            elif key == "inputContent" and self.keep_input:
                output.input_content = self.build(*self.next(), depth=2, where="inputContent")
            else:
                if key != "inputContent":
                    output.extra_keys.append(str(key)[:100])
                self.skip(*self.next(), depth=2, where=str(key)[:100])
        if not seen_answers:
            raise OutputUnreadable("it has no humanAnswers.")
        return output

    def answers(self) -> list[Answer]:
        event, _value = self.next()
        if event != "start_array":
            raise OutputUnreadable(f"humanAnswers is {_TYPE_NAMES.get(event, event)}, not a list.")
        answers = []
        while True:
            event, _value = self.next()
            if event == "end_array":
                return answers
            if len(answers) == MAX_ANSWERS:
                raise OutputUnreadable(f"humanAnswers has more than {MAX_ANSWERS} answers.")
            if event != "start_map":
                raise OutputUnreadable(
                    f"humanAnswers[{len(answers)}] is {_TYPE_NAMES.get(event, event)}, not an object."
                )
            answers.append(self.answer(len(answers)))

    def answer(self, index: int) -> Answer:
        where = f"humanAnswers[{index}]"
        fields: dict = {}
        content, content_bytes, too_large = None, 0, False
        seen_content = False
        while True:
            event, key = self.next()
            if event == "end_map":
                break
            if key == "answerContent":
                seen_content = True
                event, value = self.next()
                if event != "start_map":
                    raise OutputUnreadable(f"{where}.answerContent is {_TYPE_NAMES.get(event, event)}, not an object.")
                content, content_bytes, too_large = self.content(where)
            elif key in ("workerId", "acceptanceTime", "submissionTime"):
                fields[key] = self.scalar(f"{where}.{key}")
            elif key == "timeSpentInSeconds":
                fields[key] = self.scalar(f"{where}.{key}")
            elif key == "workerMetadata":
                fields.update(self.worker_metadata(f"{where}.workerMetadata"))
            else:
                self.skip(*self.next(), depth=4, where=f"{where}.{key}")
        if not seen_content:
            raise OutputUnreadable(f"{where} has no answerContent.")
        return Answer(
            index=index,
            worker_id=_identifier(fields.get("workerId"), f"{where}.workerId", required=True),
            worker_sub=_identifier(fields.get("sub"), f"{where}.workerMetadata.identityData.sub", required=False),
            identity_provider=_identifier(
                fields.get("identityProviderType"), f"{where}.workerMetadata.identityData.identityProviderType", required=False
            ),
            acceptance_time=_timestamp(fields.get("acceptanceTime"), f"{where}.acceptanceTime", required=False),
            submission_time=_timestamp(fields.get("submissionTime"), f"{where}.submissionTime", required=True),
            time_spent_seconds=_seconds(fields.get("timeSpentInSeconds"), f"{where}.timeSpentInSeconds"),
            content=content,
            content_bytes=content_bytes,
            content_too_large=too_large,
            content_hash="" if too_large else content_hash(content),
        )

    def content(self, where: str) -> tuple[dict | None, int, bool]:
        """The answerContent object (its start_map already read): (content, bytes, too large)."""
        try:
            value = self.build("start_map", None, depth=4, where=f"{where}.answerContent", budget=self.content_max_bytes)
        except _TooLarge as exc:
            return None, exc.args[0], True
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > self.content_max_bytes:
            return None, size, True
        return value, size, False

    def worker_metadata(self, where: str) -> dict:
        event, _value = self.next()
        if event == "null":
            return {}
        if event != "start_map":
            raise OutputUnreadable(f"{where} is {_TYPE_NAMES.get(event, event)}, not an object.")
        found = {}
        while True:
            event, key = self.next()
            if event == "end_map":
                return found
            if key != "identityData":
                self.skip(*self.next(), depth=5, where=f"{where}.{key}")
                continue
            event, _value = self.next()
            if event == "null":
                continue
            if event != "start_map":
                raise OutputUnreadable(f"{where}.identityData is {_TYPE_NAMES.get(event, event)}, not an object.")
            while True:
                event, key = self.next()
                if event == "end_map":
                    break
                if key in ("sub", "identityProviderType"):
                    found[key] = self.scalar(f"{where}.identityData.{key}")
                else:
                    self.skip(*self.next(), depth=6, where=f"{where}.identityData.{key}")

    def scalar(self, where: str):
        event, value = self.next()
        if event not in _SCALARS:
            raise OutputUnreadable(f"{where} is {_TYPE_NAMES.get(event, event)}, not a single value.")
        return value

    def string(self, where: str, max_length: int) -> str:
        value = self.scalar(where)
        if value is None:
            return ""
        if not isinstance(value, str) or len(value) > max_length:
            raise OutputUnreadable(f"{where} is not a string of at most {max_length} characters.")
        return value

    def build(self, event: str, value, *, depth: int, where: str, budget: int | None = None):
        """The JSON value that starts with (event, value), built with an explicit stack.

        `depth`: the nesting level of that value (the top-level object is level 1).

        `budget`: raise _TooLarge(estimated bytes) once the value's compact size passes it;
        the rest of the value is still consumed (and depth-checked) so parsing goes on.
        """
        if event in _SCALARS:
            return value
        size = 0
        root: object = {} if event == "start_map" else []
        stack: list = [root]
        keys: list = [None]
        building = True
        while stack:
            event, value = self.next()
            if event == "map_key":
                keys[-1] = value
                size += len(value) + 3
                continue
            if event in ("start_map", "start_array"):
                if depth + len(stack) > MAX_DEPTH:
                    raise OutputUnreadable(f"{where} is nested more than {MAX_DEPTH} levels deep.")
                item = {} if event == "start_map" else []
                size += 2
            elif event in ("end_map", "end_array"):
                stack.pop()
                keys.pop()
                continue
            else:
                item = value
                size += (len(value) + 2) if isinstance(value, str) else 6
            if building:
                parent = stack[-1]
                if isinstance(parent, dict):
                    parent[keys[-1]] = item
                else:
                    parent.append(item)
                if budget is not None and size > budget:
                    building = False  # stop keeping anything; keep counting
            if event in ("start_map", "start_array"):
                stack.append(item)
                keys.append(None)
        if not building:
            raise _TooLarge(size)
        return root

    def skip(self, event: str, value, *, depth: int, where: str) -> None:
        """Consume the value that starts with (event, value) without keeping it (depth still capped)."""
        if event in _SCALARS:
            return
        level = 1
        while level:
            event, _value = self.next()
            if event in ("start_map", "start_array"):
                level += 1
                if depth + level - 1 > MAX_DEPTH:
                    raise OutputUnreadable(f"{where} is nested more than {MAX_DEPTH} levels deep.")
            elif event in ("end_map", "end_array"):
                level -= 1


# --- field checks ----------------------------------------------------------------------


def valid_worker_id(value: str) -> bool:
    """Whether `value` could be a stored worker id (1 to 256 printable characters)."""
    return 0 < len(value) <= MAX_ID_LENGTH and not _CONTROL.search(value)


def _identifier(value, where: str, *, required: bool) -> str:
    if value is None or value == "":
        if required:
            raise OutputUnreadable(f"{where} is missing.")
        return ""
    if not isinstance(value, str) or len(value) > MAX_ID_LENGTH or _CONTROL.search(value):
        raise OutputUnreadable(f"{where} is not a string of 1 to {MAX_ID_LENGTH} printable characters.")
    return value


def _timestamp(value, where: str, *, required: bool) -> datetime | None:
    if value is None:
        if required:
            raise OutputUnreadable(f"{where} is missing.")
        return None
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        raise OutputUnreadable(f"{where} is not an ISO-8601 timestamp.")
    try:
        moment = ciso8601.parse_datetime(value)
    except ValueError:
        raise OutputUnreadable(f"{where} is not an ISO-8601 timestamp: {value!r}.") from None
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise OutputUnreadable(f"{where} is out of range: {value!r}.") from None
    if not EARLIEST <= moment < LATEST:
        raise OutputUnreadable(f"{where} is out of range (1970 to 2200): {value!r}.")
    return moment


def _seconds(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise OutputUnreadable(f"{where} is not a number of seconds (finite, 0 or more).")
    if value > 10 * 365 * 86400:
        raise OutputUnreadable(f"{where} is out of range: {value!r}.")
    return float(value)


def _short(exc: BaseException) -> str:
    """The first line of a parser's message (yajl's go on with an excerpt of the file)."""
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return " ".join(first.split())[:200] or exc.__class__.__name__
