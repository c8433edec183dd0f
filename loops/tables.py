"""The loop list table: HTML columns and the export columns (CSV/JSON) in one place.

Rendering never touches `record.flow_definition` (one query per row, or a JOIN that
slows deep pages): the table gets the flow definitions as a dict by id instead.
Every orderable column ends with `id` so pages are stable. Sorting by name,
creation time, status or flow definition follows an index of models.py; sorting
by failure code or status change time sorts the filtered set (fine once filtered,
slow on an unfiltered million).
"""

from __future__ import annotations

from html import escape

import django_tables2 as tables
from django.core.paginator import EmptyPage, Page
from django.db.models import QuerySet
from django_tables2.paginators import LazyPaginator
from django_tables2.rows import BoundRow
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from loops.models import HumanLoop
from loops.templatetags.loops_extras import timestamp_html

DEFAULT_ORDER = "-creation_time"


class LoopTable(tables.Table):
    select = tables.CheckBoxColumn(
        accessor="pk",
        attrs={
            "input": {"name": "loop", "form": "bulk-form", "aria-label": "Select this loop"},
            "th__input": {"aria-label": "Select every loop on this page", "data-select-page": "1"},
        },
        exclude_from_export=True,
        orderable=False,
    )
    name = tables.Column(verbose_name="Name", order_by=("name", "id"))
    flow_definition = tables.Column(
        verbose_name="Flow definition",
        accessor="flow_definition_id",
        # Grouped by flow definition (in discovery order), newest first within each.
        order_by=("flow_definition_id", "-creation_time", "-id"),
    )
    status = tables.Column(verbose_name="Status", order_by=("status", "-creation_time", "-id"))
    creation_time = tables.Column(verbose_name="Created (UTC)", order_by=("creation_time", "id"))
    failure_code = tables.Column(verbose_name="Failure code", order_by=("failure_code", "-creation_time", "-id"))
    failure_reason = tables.Column(verbose_name="Failure reason", orderable=False)
    status_changed_at = tables.Column(verbose_name="Status changed", order_by=("status_changed_at", "id"))
    deleted_upstream = tables.BooleanColumn(verbose_name="Deleted upstream", orderable=False, visible=False)
    # Export only (invisible in HTML, still part of as_values/export rows).
    arn = tables.Column(verbose_name="ARN", visible=False, orderable=False)
    flow_definition_arn = tables.Column(verbose_name="Flow definition ARN", accessor="flow_definition_id", visible=False, orderable=False)
    output_s3_uri = tables.Column(verbose_name="Output S3 URI", visible=False, orderable=False)

    class Meta:
        model = HumanLoop
        fields = ()
        sequence = (
            "select",
            "name",
            "flow_definition",
            "status",
            "creation_time",
            "status_changed_at",
            "failure_code",
            "failure_reason",
            "...",
        )
        order_by = DEFAULT_ORDER
        attrs = {"class": "table loops"}
        row_attrs = {"data-status": lambda record: record.status}
        empty_text = "No loops"
        template_name = "loops/_table.html"

    def __init__(self, *args, flow_definitions: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # {id: FlowDefinition}; 10s of rows, loaded once per request.
        self.flow_definitions = flow_definitions or {}

    # --- HTML ---------------------------------------------------------------
    #
    # The body is built here rather than by django-tables2's generic cell machinery
    # (signature inspection, attrs and accessor resolution per cell: ~1.5 ms per row,
    # most of the page budget). Every value from A2I goes through stdlib html.escape
    # (quotes included, so it is safe in attributes too).

    def rows_html(self) -> SafeString:
        """The current page's <tr> elements."""
        now = timezone.now()
        self._fd_cells: dict[int, str] = {}
        self._loop_url = reverse("loops:loop_list")
        names = [column.name for column in self.columns]
        labels = [escape("Select" if name == "select" else str(self.columns[name].header)) for name in names]
        renderers = [getattr(self, f"render_{name}") for name in names]
        rows = []
        for row in self.paginated_rows:
            record = row.record
            record._now = now
            cells = "".join(
                f'<td class="col-{name}" data-label="{label}">{render(record)}</td>'
                for name, label, render in zip(names, labels, renderers)
            )
            rows.append(f'<tr data-status="{escape(record.status)}">{cells}</tr>')
        return mark_safe("\n".join(rows))

    def render_select(self, record):
        return mark_safe(
            f'<input type="checkbox" name="loop" value="{record.pk}" form="bulk-form" aria-label="Select {escape(record.name)}">'
        )

    def render_name(self, record):
        url = getattr(self, "_loop_url", None) or reverse("loops:loop_list")
        return mark_safe(f'<a href="{url}{record.pk}/">{escape(record.name)}</a>')

    def render_flow_definition(self, record):
        cache = getattr(self, "_fd_cells", None)
        if cache is None:
            cache = self._fd_cells = {}
        fd_id = record.flow_definition_id
        if fd_id not in cache:
            fd = self.flow_definitions.get(fd_id)
            cache[fd_id] = (
                "—"
                if fd is None
                else f'<a href="{reverse("loops:flow_definition", args=[fd.pk])}" title="{escape(fd.arn)}">{escape(fd.name)}</a>'
                f' <span class="muted">{escape(fd.region)}</span>'
            )
        return mark_safe(cache[fd_id])

    def render_status(self, record):
        deleted = ' <span class="badge deleted">deleted upstream</span>' if record.deleted_upstream else ""
        status = escape(record.status)
        return mark_safe(f'<span class="badge status-{status.lower()}">{status}</span>{deleted}')

    def render_creation_time(self, record):
        return timestamp_html(record.creation_time, getattr(record, "_now", None))

    def render_status_changed_at(self, record):
        return timestamp_html(record.status_changed_at, getattr(record, "_now", None))

    def render_failure_code(self, record):
        return escape(record.failure_code)

    def render_failure_reason(self, record):
        reason = escape(record.failure_reason)
        return mark_safe(f'<span class="truncate" title="{reason}">{reason}</span>') if reason else ""

    # --- export (CSV/JSON): plain values ---------------------------------------

    def value_name(self, value):
        return value

    def value_flow_definition(self, value):
        fd = self.flow_definitions.get(value)
        return fd.name if fd else ""

    def value_flow_definition_arn(self, value):
        fd = self.flow_definitions.get(value)
        return fd.arn if fd else ""

    def value_status(self, record):
        return record.status

    def value_creation_time(self, value):
        return value.isoformat() if value else ""

    def value_status_changed_at(self, value):
        return value.isoformat() if value else ""

    def value_failure_code(self, value):
        return value

    def value_failure_reason(self, value):
        return value

    def value_deleted_upstream(self, value):
        return bool(value)


class DeferredJoinPaginator(LazyPaginator):
    """django-tables2's LazyPaginator (no COUNT), plus a "deferred join" for deep pages.

    OFFSET 25,000 over full rows visits 25,000 table rows only to throw them away.
    Past the first pages this paginator first selects the page's ids (an index-only
    scan of the list's index when one covers the sort), then loads just those rows
    by primary key, in the same order.
    """

    DEFERRED_FROM_OFFSET = 1_000

    def page(self, number):
        number = self.validate_number(number or 1)
        bottom = (number - 1) * self.per_page
        bound_rows = self.object_list
        queryset = getattr(getattr(bound_rows, "data", None), "data", None)
        if bottom < self.DEFERRED_FROM_OFFSET or not isinstance(queryset, QuerySet):
            return super().page(number)
        top = bottom + self.per_page
        look_ahead_items = (self.look_ahead - 1) * self.per_page + 1
        ids = list(queryset.values_list("pk", flat=True)[bottom : top + self.orphans + look_ahead_items])
        by_pk = {record.pk: record for record in queryset.model._base_manager.filter(pk__in=ids)}
        objects = [BoundRow(by_pk[pk], table=bound_rows.table) for pk in ids if pk in by_pk]
        # The rest is LazyPaginator.page's bookkeeping, unchanged.
        if len(objects) > self.per_page + self.orphans:
            self._num_pages = number + (len(objects) // self.per_page)
            objects = objects[: self.per_page]
        elif number != 1 and len(objects) <= self.orphans:
            raise EmptyPage("That page contains no results")
        else:
            self._num_pages = number
            self._final_num_pages = number
        return Page(objects, number, self)
