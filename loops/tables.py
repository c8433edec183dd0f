"""The dashboard's django-tables2 tables: the loop list (HTML and export), the audit log, the plan, the reviewers.

Rendering never touches `record.flow_definition` (one query per row, or a JOIN that
slows deep pages): the table gets the flow definitions as a dict by id instead.
Every orderable column ends with `id` so pages are stable. Sorting by name,
creation time, status or flow definition follows an index of models.py; sorting
by failure code or status change time sorts the filtered set (fine once filtered,
slow on an unfiltered million).
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import urlencode

import django_tables2 as tables
from django.core.paginator import EmptyPage, Page
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from django_tables2.paginators import LazyPaginator
from django_tables2.rows import BoundRow

from loops.formatting import human_duration, percent, timestamp_html
from loops.models import HumanLoop, LoopAction

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
        empty_text = "No loops"
        template_name = "loops/_table.html"

    def __init__(self, *args, flow_definitions: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # {id: FlowDefinition}; 10s of rows, loaded once per request.
        self.flow_definitions = flow_definitions or {}

    def rows_html(self) -> SafeString:
        """The current page's <tr> elements (see LoopRowRenderer)."""
        renderer = LoopRowRenderer([column.name for column in self.columns], self.flow_definitions)
        return renderer.render([row.record for row in self.paginated_rows])

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


class LoopRowRenderer:
    """The loop list's <tr> elements, written directly rather than by django-tables2's cells.

    django-tables2 resolves attrs, accessors and render_* signatures for every cell,
    which costs most of the loop list's page budget at 50 rows (docs/performance.md,
    "Loop list rows", has the measurement); the list's cells are simple, so one
    method per column writes them with stdlib escaping (html.escape quotes quotes
    too, so values are safe inside attributes). Only the loop list uses this; the
    other tables let django-tables2 render.
    """

    def __init__(self, columns: list[str], flow_definitions: dict, now: datetime | None = None):
        self.columns = columns
        self.flow_definitions = flow_definitions
        self.now = now or timezone.now()
        self.loop_url = reverse("loops:loop_list")
        self.fd_cells: dict[int, str] = {}  # one flow definition cell per flow definition and page
        self.cells = [(name, getattr(self, f"cell_{name}")) for name in columns]

    def render(self, loops) -> SafeString:
        rows = []
        for loop in loops:
            cells = "".join(f'<td class="col-{name}" data-label="{LABELS[name]}">{cell(loop)}</td>' for name, cell in self.cells)
            rows.append(f'<tr data-status="{escape(loop.status)}">{cells}</tr>')
        return mark_safe("\n".join(rows))

    def cell_select(self, loop) -> str:
        return f'<input type="checkbox" name="loop" value="{loop.pk}" form="bulk-form" aria-label="Select {escape(loop.name)}">'

    def cell_name(self, loop) -> str:
        return f'<a href="{self.loop_url}{loop.pk}/">{escape(loop.name)}</a>'

    def cell_flow_definition(self, loop) -> str:
        fd_id = loop.flow_definition_id
        if fd_id not in self.fd_cells:
            fd = self.flow_definitions.get(fd_id)
            self.fd_cells[fd_id] = (
                "—"
                if fd is None
                else f'<a href="{reverse("loops:flow_definition", args=[fd.pk])}" title="{escape(fd.arn)}">{escape(fd.name)}</a>'
                f' <span class="muted">{escape(fd.region)}</span>'
            )
        return self.fd_cells[fd_id]

    def cell_status(self, loop) -> str:
        status = escape(loop.status)
        deleted = ' <span class="badge deleted">deleted upstream</span>' if loop.deleted_upstream else ""
        return f'<span class="badge status-{status.lower()}">{status}</span>{deleted}'

    def cell_creation_time(self, loop) -> str:
        return timestamp_html(loop.creation_time, self.now)

    def cell_status_changed_at(self, loop) -> str:
        return timestamp_html(loop.status_changed_at, self.now)

    def cell_failure_code(self, loop) -> str:
        return escape(loop.failure_code)

    def cell_failure_reason(self, loop) -> str:
        reason = escape(loop.failure_reason)
        return f'<span class="truncate" title="{reason}">{reason}</span>' if reason else ""


# data-label of each cell (the small-screen layout shows it before the value).
LABELS = {name: escape("Select" if name == "select" else str(column.verbose_name)) for name, column in LoopTable.base_columns.items()}


class LoopActionTable(tables.Table):
    """The audit log (/actions/audit/): one row per stop/delete attempt."""

    created_at = tables.DateTimeColumn(verbose_name="When (UTC)", format="Y-m-d H:i:s")
    user = tables.Column(verbose_name="Who", accessor="user__username")
    loop = tables.Column(verbose_name="Loop", accessor="loop__name", linkify=lambda record: reverse("loops:loop", args=[record.loop_id]))
    action = tables.Column()
    reason = tables.Column()
    outcome = tables.Column()
    detail = tables.Column(verbose_name="Detail / error")
    batch = tables.Column(accessor="batch_id", linkify=lambda record: reverse("actions:batch", args=[record.batch_id]))

    class Meta:
        model = LoopAction
        fields = ("created_at", "user", "loop", "action", "reason", "outcome", "detail", "batch")
        order_by = "-created_at"
        attrs = {"class": "table"}


class PlannedLoopTable(tables.Table):
    """A confirmation page's sample of the selection (services.actions.Plan.loops), admin and dashboard alike."""

    name = tables.Column(accessor="loop__name", verbose_name="Name")
    flow_definition = tables.Column(accessor="loop__flow_definition__name", verbose_name="Flow definition")
    status = tables.Column(accessor="loop__status", verbose_name="Status")
    creation_time = tables.DateTimeColumn(accessor="loop__creation_time", verbose_name="Created (UTC)", format="Y-m-d H:i:s")
    will_be = tables.Column(empty_values=(), verbose_name="Will be")

    class Meta:
        orderable = False
        attrs = {"class": "table", "id": "confirm-loops"}
        row_attrs = {"class": lambda record: "eligible" if record.eligible else "skipped"}

    def __init__(self, plan, action_label: str):
        super().__init__(plan.loops)
        self.action_label = action_label.lower()

    def render_will_be(self, record):
        return self.action_label if record.eligible else f"skipped: {record.skip_reason}"


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
        rows = queryset.model._base_manager.filter(pk__in=ids)
        rows.query.deferred_loading = queryset.query.deferred_loading  # the same columns (.only())
        by_pk = {record.pk: record for record in rows}
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


class ReviewerTable(tables.Table):
    """The reviewers page (/reviewers/): one row per worker (services.reviewers.ReviewerRow).

    At most a few hundred rows (one per worker), sorted in Python by django-tables2, which
    also draws the headers and pages; the page's rows are written by rows_html, for the
    same reason as the loop list's (django-tables2's per-cell machinery was most of the
    page's time: docs/performance.md, "Answers"). `query` is the page's filter query
    string, carried over to the worker page and the loop list.
    """

    worker_id = tables.Column(verbose_name="Worker")
    answers = tables.Column(verbose_name="Answers")
    loops_per_day = tables.Column(verbose_name="Loops per active day")
    time_median = tables.Column(verbose_name="Median time on task")
    time_p90 = tables.Column(verbose_name="p90 time on task")
    wait_median = tables.Column(verbose_name="Median queue wait")
    share = tables.Column(verbose_name="Share of answers")
    agreement = tables.Column(verbose_name="Agreement")

    class Meta:
        order_by = "-answers"
        attrs = {"class": "table reviewers"}
        empty_text = "No answers match these filters"
        template_name = "loops/reviewers/_table.html"

    def __init__(self, *args, query: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.query = query

    def rows_html(self) -> SafeString:
        """The current page's <tr> elements."""
        loops_url = reverse("loops:loop_list")
        suffix = f"?{escape(self.query)}" if self.query else ""
        extra = f"&amp;{escape(self.query)}" if self.query else ""
        rows = []
        for record in (row.record for row in self.paginated_rows):
            worker = escape(record.worker_id)
            agreement = (
                f'{percent(record.agreement)} <span class="muted small">of {record.pairs_compared:,} compared</span>'
                if record.agreement is not None
                else "—"
            )
            cells = (
                ("Worker", "", f'<a href="{escape(reverse("loops:reviewer", args=[record.worker_id]))}{suffix}">{worker}</a>'),
                ("Answers", "", f'<a href="{loops_url}?{escape(urlencode({"reviewer": record.worker_id}))}{extra}" '
                 f'title="Their loops in the loop list">{record.answers:,}</a>'),
                ("Loops per active day", "num", "—" if record.loops_per_day is None else f"{record.loops_per_day:,.1f}"),
                ("Median time on task", "num", human_duration(record.time_median)),
                ("p90 time on task", "num", human_duration(record.time_p90)),
                ("Median queue wait", "num", human_duration(record.wait_median)),
                ("Share of answers", "num", percent(record.share)),
                ("Agreement", "num", agreement),
            )
            tds = "".join(f'<td class="{cls}" data-label="{label}">{html}</td>' for label, cls, html in cells)
            rows.append(f"<tr>{tds}</tr>")
        return mark_safe("\n".join(rows))
