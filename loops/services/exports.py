"""Streaming CSV and JSON bodies, row by row, for every export the product writes.

Exports can be a million rows: each function yields text as it goes, for a
StreamingHttpResponse or a file, so memory stays flat.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator


class _Echo:
    """A file-like whose write returns the line, so csv.writer can feed a generator."""

    def write(self, value: str) -> str:
        return value


def stream_csv(rows: Iterable[tuple[list, list]]) -> Iterator[str]:
    """CSV lines: the headers of the first (headers, None) item, then one line per (headers, values)."""
    writer = csv.writer(_Echo())
    for headers, values in rows:
        yield writer.writerow(headers if values is None else values)


def stream_json(rows: Iterable[tuple[list, list]]) -> Iterator[str]:
    """A JSON array of objects keyed by column header, one object per line."""
    yield "["
    first = True
    for headers, values in rows:
        if values is None:
            continue
        yield ("\n" if first else ",\n") + json.dumps(dict(zip(headers, values, strict=True)), default=str, ensure_ascii=False)
        first = False
    yield "\n]\n"
