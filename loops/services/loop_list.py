"""The loop list's non-view logic: counting matches cheaply, explaining an empty result, streaming exports.

Counting: an exact COUNT(*) of a million-row result costs more than the whole page
budget on PostgreSQL. So the count is capped (COUNT over `LIMIT 10001`, an
index-only scan of at most 10,001 entries); above the cap it is an estimate,
labelled as such: the per-flow-definition statistics when only flow definition and
status filter (exact as of their last refresh), otherwise PostgreSQL's planner
estimate (EXPLAIN).

Export: django-tables2's TableExport builds a whole tablib Dataset in memory before
writing a byte, so it cannot stream a million rows. We keep its column definitions
and `value_*` rendering (Table.as_values semantics) and write CSV/JSON ourselves,
row by row, over `QuerySet.iterator(chunk_size=...)` (a server-side cursor on
PostgreSQL), inside a StreamingHttpResponse: memory stays flat.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet
from django.http import QueryDict
from django.utils.encoding import force_str

from loops.filters import LoopFilter
from loops.models import FlowDefinition, HumanLoop, HumanLoopStatus

COUNT_CAP = 10_000
EXPORT_CHUNK_SIZE = 2_000


@dataclass(frozen=True)
class LoopCount:
    value: int
    exact: bool
    # "count" (exact), "statistics" (FlowDefinition.stats), "planner" (EXPLAIN estimate), "cap" (at least)
    source: str
    refreshed_at: object = None

    @property
    def label(self) -> str:
        if self.exact:
            return f"{self.value:,} loop{'' if self.value == 1 else 's'}"
        if self.source == "cap":
            return f"more than {self.value:,} loops"
        return f"about {self.value:,} loops"

    @property
    def explanation(self) -> str:
        if self.source == "statistics":
            return "Estimate from the per-flow-definition statistics, refreshed after every sync and action."
        if self.source == "planner":
            return "Estimate from PostgreSQL's query planner: counting exactly would be slow."
        if self.source == "cap":
            return "Counting stops here: counting exactly would be slow."
        return "Exact count."


# Filters whose conditions the loop table's indexes hold (flow definition, status, creation
# time, deleted upstream), so that a count under them alone is index-only.
INDEXED_FILTERS = {"flow_definition", "status", "window", "created_after", "created_before"}


def count_matching_loops(
    queryset: QuerySet, active_filters: dict, without_status: Callable[[], QuerySet] | None = None
) -> LoopCount:
    """Count `queryset`, exactly when that is cheap, else estimate. Read-only; never raises for big results.

    `without_status`: the same result without its status filter (LoopFilter.qs_without_status),
    for counting Completed loops cheaply (_capped_count).
    """
    estimate = _count_from_stats(active_filters) if set(active_filters) <= {"flow_definition", "status"} else None
    # Far above the cap, counting up to it would only confirm what the statistics say,
    # at the price of an index scan of COUNT_CAP entries on every page view.
    if estimate is not None and estimate.value > 2 * COUNT_CAP:
        return estimate
    capped = _capped_count(queryset, active_filters, without_status)
    if capped <= COUNT_CAP:
        return LoopCount(capped, True, "count")
    if estimate is not None:
        return estimate
    if connection.vendor == "postgresql":
        estimate = _planner_estimate(queryset)
        if estimate is not None:
            return LoopCount(max(estimate, COUNT_CAP + 1), False, "planner")
    return LoopCount(COUNT_CAP, False, "cap")


def _capped_count(queryset: QuerySet, active_filters: dict, without_status) -> int:
    """COUNT(*) of `queryset` up to COUNT_CAP + 1.

    Completed loops are in neither status index (models.HumanLoop), so a count of them
    would visit every row. Under indexed filters only, it is the count without the
    status filter minus the loops in the statuses not asked for, both index-only, as long
    as those are few (at most COUNT_CAP). Two statements: a sync writing between them can
    move the figure by the loops it wrote, as it moves any count a moment later.
    """
    statuses = active_filters.get("status") or []
    if without_status is not None and HumanLoopStatus.COMPLETED in statuses and set(active_filters) <= INDEXED_FILTERS:
        everything = without_status()
        others = everything.exclude(status__in=statuses).order_by()[: COUNT_CAP + 1].count()
        if others <= COUNT_CAP:
            return max(0, everything.order_by()[: COUNT_CAP + 1 + others].count() - others)
    return queryset.order_by()[: COUNT_CAP + 1].count()


def _count_from_stats(active_filters: dict) -> LoopCount | None:
    flow_definitions = FlowDefinition.objects.all()
    if "flow_definition" in active_filters:
        values = active_filters["flow_definition"]
        flow_definitions = flow_definitions.filter(Q(arn__in=values) | Q(name__in=values))
    statuses = active_filters.get("status")
    total, refreshed = 0, None
    # Only the status_counts key of the JSON document (the chart buckets are bigger).
    for counts, refreshed_at in flow_definitions.values_list("stats__status_counts", "stats_refreshed_at"):
        if counts is None:
            return None  # never refreshed: no basis for an estimate
        total += sum(n for status, n in counts.items() if not statuses or status in statuses)
        refreshed = max(filter(None, [refreshed, refreshed_at]), default=None)
    return LoopCount(total, False, "statistics", refreshed)


def _planner_estimate(queryset: QuerySet) -> int | None:
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    try:
        return int(plan[0]["Plan"]["Plan Rows"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# --- an empty result, explained ----------------------------------------------

FILTER_LABELS = {
    "flow_definition": "flow definition",
    "status": "status",
    "window": "time window",
    "created_after": "created after",
    "created_before": "created before",
    "name": "name contains",
    "failure_code": "failure code",
    "reviewer": "reviewer",
    "agreement": "reviewers' agreement",
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
    if not filterset.form.cleaned_data.get("deleted"):
        with_deleted = params.copy()
        with_deleted["deleted"] = "on"
        other = LoopFilter(with_deleted)
        if other.is_valid() and other.qs.exists():
            reasons.append("Some loops deleted upstream match: tick “include loops deleted upstream” to see them.")
    if not reasons:
        reasons.append("No loop matches these filters, nor any of them relaxed one at a time: try clearing the filters.")
    return reasons



# --- export -------------------------------------------------------------------


def export_columns(table) -> list:
    """The table's exported bound columns, in order (as Table.as_values picks them)."""
    return [column for column in table.columns.iterall() if not column.column.exclude_from_export]


def _getter(table, bound_column):
    """record -> exported value, with Table.as_values semantics (value_<name>, else render_<name>,
    else the accessor's value) but resolved once per column instead of once per cell: the
    generic per-cell path (signature inspection each time) exported ~1,000 rows/s."""
    name = bound_column.name
    accessor = str(bound_column.accessor)
    method = getattr(table, f"value_{name}", None) or getattr(table, f"render_{name}", None)

    def plain(record):
        value = record
        for part in accessor.split("__"):
            value = getattr(value, part, None)
            if value is None:
                break
        return value

    if method is None:
        return plain
    parameters = inspect.signature(method).parameters
    if "record" in parameters and "value" not in parameters:
        return lambda record: method(record=record)
    if "value" in parameters and "record" not in parameters:
        return lambda record: method(value=plain(record))
    return lambda record: method(record=record, value=plain(record))


def iter_export_rows(table, queryset: QuerySet, chunk_size: int = EXPORT_CHUNK_SIZE) -> Iterator[tuple[list, list]]:
    """Yield (headers, None) first, then (headers, values) per loop, reading the DB in chunks."""
    columns = export_columns(table)
    headers = [force_str(column.header, strings_only=True) for column in columns]
    getters = [_getter(table, column) for column in columns]
    yield headers, None
    for record in queryset.iterator(chunk_size=chunk_size):
        yield headers, [force_str(get(record), strings_only=True) for get in getters]
