"""The audit log's CSV export (issue 5): one line per stop/delete attempt."""

from __future__ import annotations

import csv
from collections.abc import Iterable

from django.db.models import QuerySet


AUDIT_CSV_FIELDS = [
    "created_at", "finished_at", "user", "loop", "loop_arn", "action", "reason", "outcome", "detail", "batch",
]


class _Echo:
    """A file-like object whose write() returns the line, for streaming csv.writer output."""

    def write(self, value):
        return value


def iter_audit_csv(actions_qs: QuerySet) -> Iterable[str]:
    """Yield the audit rows of `actions_qs` (LoopAction) as CSV lines, header first.

    Reads the database in chunks, so exporting the whole log keeps memory flat.
    """
    writer = csv.writer(_Echo())
    yield writer.writerow(AUDIT_CSV_FIELDS)
    rows = actions_qs.values_list(
        "created_at", "finished_at", "user__username", "loop__name", "loop__arn",
        "action", "reason", "outcome", "detail", "batch_id",
    )
    for created, finished, *rest in rows.iterator(chunk_size=2000):
        yield writer.writerow([created.isoformat(), finished.isoformat() if finished else "", *rest])
