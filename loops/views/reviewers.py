"""The reviewers pages: every worker's figures (/reviewers/, sortable, CSV/JSON), and one worker's page."""

from __future__ import annotations

from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_tables2 import RequestConfig

from loops import charts
from loops.filters import ReviewerFilter
from loops.services import reviewers
from loops.services.exports import stream_csv, stream_json
from loops.services.output_json import valid_worker_id
from loops.tables import ReviewerTable
from loops.views import exports
from loops.views.access import viewer_required

PER_PAGE = 50
SORTABLE = frozenset(name for name, column in ReviewerTable.base_columns.items() if column.orderable is not False)
FILTER_KEYS = ("flow_definition", "window", "created_after", "created_before")


@viewer_required
def reviewer_list(request):
    export = request.GET.get("_export")
    if export is not None and export not in exports.EXPORT_TYPES:
        return exports.unknown_format(export, exports.EXPORT_TYPES)
    filterset = ReviewerFilter(request.GET, request=request)
    if not filterset.is_valid():
        if export:
            return exports.bad_export(exports.errors_text(filterset.form.errors))
        return render(request, "loops/reviewers/list.html", {"filter": filterset, "invalid": True})

    problems = []
    sort = request.GET.get("sort", "")
    if sort and sort.lstrip("-") not in SORTABLE:
        problems.append(f"Cannot sort by {sort!r}: sort by one of {', '.join(sorted(SORTABLE))} (prefix - for descending).")
        sort = ""
    if export and problems:
        return exports.bad_export(" ".join(problems))

    result = reviewers.reviewer_list(filterset)
    table = ReviewerTable(result.rows, order_by=sort or None, query=_filter_query(request))
    if export:
        rows = [row.record for row in table.rows]  # in the table's order
        body = stream_csv(reviewers.export_rows(rows)) if export == "csv" else stream_json(reviewers.export_rows(rows))
        response = StreamingHttpResponse(body, content_type=exports.EXPORT_TYPES[export])
        response["Content-Disposition"] = f'attachment; filename="reviewers-{timezone.now():%Y%m%dT%H%M%SZ}.{export}"'
        return response
    RequestConfig(request, paginate={"per_page": PER_PAGE}).configure(table)
    context = {
        "filter": filterset,
        "table": table,
        "result": result,
        "problems": problems,
        "sort": sort,
        "filters_query": exports.query_without(request, ("page", "_export")),
        "ingestion": reviewers.ingestion_state(),
    }
    return render(request, "loops/reviewers/list.html", context)


@viewer_required
def reviewer_detail(request, worker_id: str):
    if not valid_worker_id(worker_id):
        # Never stored (the parser refuses such ids), and PostgreSQL refuses NUL in a query.
        raise Http404("No answer from this worker.")
    filterset = ReviewerFilter(request.GET, request=request)
    if not filterset.is_valid():
        context = {"filter": filterset, "worker_id": worker_id, "invalid": True}
        return render(request, "loops/reviewers/detail.html", context)
    page = reviewers.worker_page(worker_id, filterset)
    if page is None:
        raise Http404("No answer from this worker.")
    context = {
        "filter": filterset,
        "worker_id": worker_id,
        "worker": page,
        "chart": charts.day_bars(page.days),
        "filters_query": _filter_query(request),
    }
    return render(request, "loops/reviewers/detail.html", context)


def _filter_query(request) -> str:
    """The filter parameters alone, to carry to the worker page and the loop list."""
    query = request.GET.copy()
    for key in list(query):
        if key not in FILTER_KEYS:
            query.pop(key)
    return query.urlencode()
