"""The loop list: filters (GET contract in loops.filters), sort, lazy pages, count, export, live fragment."""

from __future__ import annotations

from django.core.paginator import EmptyPage, PageNotAnInteger
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from loops.filters import LoopFilter
from loops.models import FlowDefinition
from loops.services import page_cache
from loops.services.exports import stream_csv, stream_json
from loops.services.loop_list import count_matching_loops, explain_empty_result, iter_export_rows
from loops.tables import DeferredJoinPaginator, LoopTable
from loops.views import exports
from loops.views.access import token_or_viewer

PER_PAGE = 50
SORTABLE_COLUMNS = frozenset(name for name, column in LoopTable.base_columns.items() if column.orderable is not False)
# What LoopRowRenderer reads (the ARN and output URI, long strings, are left in the database).
LIST_COLUMNS = ("id", "name", "flow_definition_id", "status", "creation_time", "status_changed_at", "failure_code",
                "failure_reason", "deleted_upstream")
# Pages are OFFSET-based; beyond this the offset itself gets slow, and nobody reads page 20,001.
MAX_PAGE = 20_000


def _is_export(request) -> bool:
    return request.GET.get("_export") in exports.EXPORT_TYPES


# Scripts read the export with an API token (Authorization: Bearer); the page itself needs a session.
@token_or_viewer(_is_export)
def loop_list(request):
    export = request.GET.get("_export")
    if export is not None and export not in exports.EXPORT_TYPES:
        return exports.unknown_format(export, exports.EXPORT_TYPES)

    # Names and ARNs for the filter's choices and the table's column (one query for both);
    # not the (big) stats and description JSON.
    fds = list(FlowDefinition.objects.order_by("name", "region").only("pk", "arn", "name", "region"))
    filterset = LoopFilter(request.GET, request=request, flow_definitions=fds)
    flow_definitions = {fd.pk: fd for fd in fds}
    if not filterset.is_valid():
        if export:
            return exports.bad_export(exports.errors_text(filterset.form.errors))
        return _render(request, {"filter": filterset, "table": None, "invalid": True})

    problems: list[str] = []
    sort = request.GET.get("sort", "")
    allowed_sorts = SORTABLE_COLUMNS
    if sort and sort.lstrip("-") not in allowed_sorts:
        problems.append(f"Cannot sort by {sort!r}: sort by one of {', '.join(sorted(allowed_sorts))} (prefix - for descending).")
        sort = ""
    if export and problems:
        return exports.bad_export(" ".join(problems))

    can_stop = request.user.has_perm("loops.stop_humanloop")
    can_delete = request.user.has_perm("loops.delete_humanloop")
    selectable = can_stop or can_delete
    if export:
        table = LoopTable(filterset.qs, flow_definitions=flow_definitions, order_by=sort or None,
                          exclude=_hidden_columns(selectable))
        return _export(table, export)

    page_number = _page_number(request.GET.get("page"), problems)
    # The results (count, table, pages) depend on the query string, the data and whether
    # the rows have checkboxes; not on who asks: one render per data version serves everyone.
    results = page_cache.fragment(
        "loop_list", [request.META.get("QUERY_STRING", ""), str(selectable)],
        lambda: _results(request, filterset, flow_definitions, sort, page_number, problems, selectable),
    )
    context = {
        "filter": filterset,
        "results_html": results["html"],
        "count": results["count"],
        "sort": sort,
        "can_stop": can_stop,
        "can_delete": can_delete,
        "filters_query": exports.query_without(request, ("page", "_export")),
    }
    return _render(request, context)


def _results(request, filterset, flow_definitions, sort, page_number, problems, selectable) -> dict:
    """The results fragment (count, table, pagination, problems) as HTML, and the count for the bulk form."""
    table = LoopTable(
        # The page shows these columns only; an export writes every one.
        filterset.qs.only(*LIST_COLUMNS),
        flow_definitions=flow_definitions,
        order_by=sort or None,
        exclude=_hidden_columns(selectable),
        # No request=: RequestConfig would paginate with Django's Paginator, i.e. an
        # exact COUNT(*) of the whole result. We paginate lazily below.
    )
    problems = list(problems)
    try:
        table.paginate(paginator_class=DeferredJoinPaginator, per_page=PER_PAGE, page=page_number)
    except (EmptyPage, PageNotAnInteger):
        problems.append(f"Page {page_number} is past the last page of these results; showing page 1.")
        table.paginate(paginator_class=DeferredJoinPaginator, per_page=PER_PAGE, page=1)
    count = count_matching_loops(filterset.qs, filterset.active_filters(), filterset.qs_without_status)
    context = {
        "table": table,
        "count": count,
        "problems": problems,
        "empty_reasons": explain_empty_result(request.GET, filterset) if count.value == 0 else [],
    }
    # With the request: the table's sort and page links are built from its query string.
    return {"html": render_to_string("loops/_loop_results.html", context, request), "count": count}


def _hidden_columns(selectable: bool) -> tuple[str, ...]:
    # The checkboxes only for a user who may stop or delete.
    return () if selectable else ("select",)


def _render(request, context):
    if request.headers.get("HX-Request") == "true":
        # htmx's refresh of the results (nothing when the filters are invalid).
        response = HttpResponse(context.get("results_html", ""))
    else:
        response = render(request, "loops/loop_list.html", context)
    # The same URL serves the page and (for htmx polling) the fragment.
    patch_vary_headers(response, ["HX-Request"])
    return response


def _page_number(raw: str | None, problems: list[str]) -> int:
    if raw in (None, ""):
        return 1
    try:
        number = int(raw)
    except ValueError:
        problems.append(f"Page {raw!r} is not a page number; showing page 1.")
        return 1
    if number < 1 or number > MAX_PAGE:
        problems.append(f"Page {number} is out of range (1 to {MAX_PAGE:,}); showing page 1.")
        return 1
    return number


def _export(table, export_format: str):
    """Stream the whole filtered, sorted set (see services.loop_list for why not TableExport)."""
    queryset = table.data.data  # the filtered queryset, ordered by the table
    rows = iter_export_rows(table, queryset)
    body = stream_csv(rows) if export_format == "csv" else stream_json(rows)
    response = StreamingHttpResponse(body, content_type=exports.EXPORT_TYPES[export_format])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="human-loops-{stamp}.{export_format}"'
    return response
