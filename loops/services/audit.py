"""The audit log's CSV export: one line per stop/delete attempt."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from django.db.models import QuerySet

from loops.services.exports import stream_csv

AUDIT_CSV_FIELDS = [
    "created_at", "finished_at", "user", "loop", "loop_arn", "action", "reason", "outcome", "detail", "batch",
]


def iter_audit_csv(actions_qs: QuerySet) -> Iterable[str]:
    """Yield the audit rows of `actions_qs` (LoopAction) as CSV lines, header first.

    Reads the database in chunks, so exporting the whole log keeps memory flat.
    """
    return stream_csv(_audit_rows(actions_qs))


def _audit_rows(actions_qs: QuerySet) -> Iterator[tuple[list, list | None]]:
    yield AUDIT_CSV_FIELDS, None
    rows = actions_qs.values_list(
        "created_at", "finished_at", "user__username", "loop__name", "loop__arn",
        "action", "reason", "outcome", "detail", "batch_id",
    )
    for created, finished, *rest in rows.iterator(chunk_size=2000):
        yield AUDIT_CSV_FIELDS, [created.isoformat(), finished.isoformat() if finished else "", *rest]
