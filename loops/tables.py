"""The loop list table: HTML columns and the export columns (CSV/JSON) in one place.

Rendering never touches `record.flow_definition` (one query per row, or a JOIN that
slows deep pages): the table gets the flow definitions as a dict by id instead.
Every orderable column orders by an indexed prefix and ends with `id`, so sorts
stay index-friendly and pages are stable.
"""

from __future__ import annotations

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from loops.models import HumanLoop
from loops.templatetags.loops_extras import timestamp

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

    def render_name(self, record):
        return format_html('<a href="{}">{}</a>', reverse("loops:loop", args=[record.pk]), record.name)

    def render_flow_definition(self, value):
        fd = self.flow_definitions.get(value)
        if fd is None:
            return "—"
        return format_html(
            '<a href="{}" title="{}">{}</a> <span class="muted">{}</span>',
            reverse("loops:flow_definition", args=[fd.pk]),
            fd.arn,
            fd.name,
            fd.region,
        )

    def render_status(self, record):
        deleted = mark_safe(' <span class="badge deleted">deleted upstream</span>') if record.deleted_upstream else ""
        return format_html(
            '<span class="badge status-{}">{}</span>{}', record.status.lower(), record.status, deleted
        )

    def render_creation_time(self, value):
        return timestamp(value)

    def render_status_changed_at(self, value):
        return timestamp(value)

    def render_failure_reason(self, value):
        return format_html('<span class="truncate" title="{}">{}</span>', value, value)

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

    def value_failure_reason(self, value):
        return value

    def value_deleted_upstream(self, value):
        return bool(value)
