"""Streaming CSV and JSON bodies, row by row, for every export the product writes.

Exports can be a million rows: each function yields text as it goes, for a
StreamingHttpResponse or a file, so memory stays flat.

`stream_csv` is the only CSV writer in the product: every cell it writes is neutralised
against spreadsheet formula injection (OWASP's rule: a cell starting with `=`, `+`, `-`,
`@`, a tab or a carriage return gets a leading single quote), so a failure reason of
`=HYPERLINK(...)` opens as text. JSON is data, not a spreadsheet: written as it is.

Failures: by the time a row fails (the database connection drops, a value cannot be
rendered) the status line and the first rows are already sent, so the error cannot be a
status code. Both writers log it and end the body in a way a client detects: the CSV
with a last line starting `#EXPORT FAILED`, the JSON with text that makes the document
invalid (never a plausible shorter list).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator

logger = logging.getLogger(__name__)

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
FAILED_MARK = "#EXPORT FAILED"


class _Echo:
    """A file-like whose write returns the line, so csv.writer can feed a generator."""

    def write(self, value: str) -> str:
        return value


def neutralise_cell(value) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _failure_text(exc: BaseException) -> str:
    # The exception's class only: its message may hold SQL or internal details.
    return f"{FAILED_MARK}: the export stopped at this point and is incomplete ({exc.__class__.__name__}); see the server log"


def stream_csv(rows: Iterable[tuple[list, list]]) -> Iterator[str]:
    """CSV lines: the headers of the first (headers, None) item, then one line per (headers, values).

    Every cell is neutralised (neutralise_cell). A failure while iterating `rows` is
    logged and ends the body with a `#EXPORT FAILED: ...` line.
    """
    writer = csv.writer(_Echo())
    try:
        for headers, values in rows:
            yield writer.writerow([neutralise_cell(cell) for cell in (headers if values is None else values)])
    except Exception as exc:
        logger.exception("CSV export failed after it started; the client got an incomplete file")
        yield writer.writerow([_failure_text(exc)])


def stream_json(rows: Iterable[tuple[list, list]]) -> Iterator[str]:
    """A JSON array of objects keyed by column header, one object per line.

    A failure while iterating `rows` is logged and ends the body with text that is not
    JSON, so a client's parser fails instead of accepting a truncated list.
    """
    yield "["
    first = True
    try:
        for headers, values in rows:
            if values is None:
                continue
            yield ("\n" if first else ",\n") + json.dumps(dict(zip(headers, values, strict=True)), default=str, ensure_ascii=False)
            first = False
    except Exception as exc:
        logger.exception("JSON export failed after it started; the client got an invalid document")
        yield f"\n{_failure_text(exc)}\n"
        return
    yield "\n]\n"
