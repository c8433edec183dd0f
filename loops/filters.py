"""The GET filters: the loop list's contract (LoopFilter) and the audit log's (LoopActionFilter).

The loop list's contract:

    flow_definition  repeatable; a flow definition ARN or name (a name matches it in every region)
    status           repeatable; A2I's exact strings (InProgress, Completed, Failed, Stopping, Stopped)
    window           1h | 24h | 7d | 30d | all (default all): created within the last ...
    created_after    ISO-8601; naive values (<input type="datetime-local">) are UTC; inclusive (>=)
    created_before   ISO-8601, same rules; exclusive (<)
    name             case-insensitive "contains"
    failure_code     exact (ValidationError, Expired, InternalError, ...)
    deleted          1/true/yes/on: include loops deleted upstream; 0/false/no/off or absent: not
                     (anything else is an error)
    reviewer         a worker id: loops with an answer from this worker (read from output.json)
    agreement        agree | disagree: loops with 2+ answers that are all equal / not all equal

The actions use the same FilterSet to resolve "all N loops matching these
filters", so it must stay free of view concerns.
"""

from __future__ import annotations

from datetime import timedelta

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.utils import timezone

from loops.fields import IdField, StrictBooleanField, UTCDateTimeField
from loops.models import FlowDefinition, HumanAnswer, HumanLoop, HumanLoopStatus, LoopAction, LoopActionBatch

WINDOWS = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
WINDOW_CHOICES = [
    ("all", "Any time"),
    ("1h", "Last hour"),
    ("24h", "Last 24 hours"),
    ("7d", "Last 7 days"),
    ("30d", "Last 30 days"),
]
FILTER_PARAMS = (
    "flow_definition", "status", "window", "created_after", "created_before", "name", "failure_code", "deleted",
    "reviewer", "agreement",
)
AGREEMENT_CHOICES = [("agree", "Reviewers agree"), ("disagree", "Reviewers disagree")]
WORKER_ID_MAX_LENGTH = 256


class FlowDefinitionField(forms.MultipleChoiceField):
    """A multiple choice over flow definition ARNs that also accepts names (the contract allows both)."""

    def __init__(self, *args, names=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.names = set(names)

    def valid_value(self, value):
        return value in self.names or super().valid_value(value)

    def validate(self, value):
        # Same as Django's, with a message that names the contract.
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        for item in value:
            if not self.valid_value(item):
                raise forms.ValidationError(
                    "Unknown flow definition %(value)s (give an ARN or a name).",
                    code="invalid_choice",
                    params={"value": item},
                )


class FlowDefinitionFilter(django_filters.MultipleChoiceFilter):
    field_class = FlowDefinitionField

    def filter(self, qs, value):
        if not value:
            return qs
        # Resolve to ids first (10s of rows) so the loop query uses loop_fd_* indexes
        # instead of joining flow definitions.
        ids = list(FlowDefinition.objects.filter(Q(arn__in=value) | Q(name__in=value)).values_list("id", flat=True))
        return qs.filter(flow_definition_id__in=ids)


class UTCDateTimeFilter(django_filters.DateTimeFilter):
    field_class = UTCDateTimeField


class IdFilter(django_filters.Filter):
    field_class = IdField


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class LoopFilterForm(forms.Form):
    def clean(self):
        cleaned = super().clean()
        after, before = cleaned.get("created_after"), cleaned.get("created_before")
        if after and before and after >= before:
            raise forms.ValidationError("“Created after” must be earlier than “created before”.", code="range")
        return cleaned


class LoopFilter(django_filters.FilterSet):
    flow_definition = FlowDefinitionFilter(label="Flow definition", choices=[], distinct=False)
    status = django_filters.MultipleChoiceFilter(
        label="Status",
        # No SELECT DISTINCT (django-filter's default for multiple choices): a plain
        # column IN (...) cannot duplicate rows, and DISTINCT defeats the indexes.
        distinct=False,
        choices=HumanLoopStatus.choices,
        widget=forms.CheckboxSelectMultiple,
    )
    window = django_filters.ChoiceFilter(
        label="Created in",
        choices=WINDOW_CHOICES,
        empty_label=None,
        method="filter_window",
    )
    created_after = UTCDateTimeFilter(
        label="Created after (UTC)",
        field_name="creation_time",
        lookup_expr="gte",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )
    created_before = UTCDateTimeFilter(
        label="Created before (UTC)",
        field_name="creation_time",
        lookup_expr="lt",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )
    name = django_filters.CharFilter(label="Name contains", field_name="name", lookup_expr="icontains", max_length=63)
    failure_code = django_filters.CharFilter(label="Failure code", field_name="failure_code", max_length=32)
    deleted = StrictBooleanFilter(label="Include loops deleted upstream", method="filter_deleted")
    reviewer = django_filters.CharFilter(label="Answered by (worker id)", method="filter_reviewer", max_length=WORKER_ID_MAX_LENGTH)
    agreement = django_filters.ChoiceFilter(label="Reviewers", choices=AGREEMENT_CHOICES, method="filter_agreement")

    class Meta:
        model = HumanLoop
        fields: list[str] = []
        form = LoopFilterForm

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None, flow_definitions=None):
        """`flow_definitions`: the FlowDefinition rows (arn, name, region), ordered by name and
        region, when the caller has them already (the loop list: one query fewer per page)."""
        if queryset is None:
            queryset = HumanLoop.objects.all()
        super().__init__(data, queryset, request=request, prefix=prefix)
        if flow_definitions is None:
            flow_definitions = FlowDefinition.objects.order_by("name", "region").only("arn", "name", "region")
        flow_definitions = [(fd.arn, fd.name, fd.region) for fd in flow_definitions]
        field = self.filters["flow_definition"]
        field.extra["choices"] = [(arn, f"{name} ({region})") for arn, name, region in flow_definitions]
        field.extra["names"] = [name for _arn, name, _region in flow_definitions]

    def filter_window(self, qs, name, value):
        delta = WINDOWS.get(value)
        if delta is None:
            return qs
        return qs.filter(creation_time__gte=timezone.now() - delta)

    def filter_reviewer(self, qs, name, value):
        # Index answer_worker_created: the loop ids this worker answered.
        return qs.filter(pk__in=HumanAnswer.objects.filter(worker_id=value).values("loop_id"))

    def filter_agreement(self, qs, name, value):
        # Index answer_agreement: every answer row carries its loop's agreement.
        return qs.filter(pk__in=HumanAnswer.objects.filter(loop_agrees=value == "agree").values("loop_id"))

    def filter_deleted(self, qs, name, value):
        # Applied in filter_queryset so that "off" (the default) also filters.
        return qs

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("deleted"):
            queryset = queryset.filter(deleted_upstream=False)
        return queryset

    def qs_without_status(self) -> QuerySet:
        """The result of every filter but status (services.loop_list counts Completed loops
        as these minus the loops in the other statuses)."""
        cleaned = self.form.cleaned_data
        self.form.cleaned_data = {**cleaned, "status": []}
        try:
            return self.filter_queryset(self.queryset.all())
        finally:
            self.form.cleaned_data = cleaned

    def active_filters(self) -> dict[str, object]:
        """The filters that restrict the result, as {param: cleaned value} (valid forms only)."""
        active = {}
        for key in FILTER_PARAMS:
            value = self.form.cleaned_data.get(key)
            if key == "window" and value in (None, "", "all"):
                continue
            if value in (None, "", [], False):
                continue
            active[key] = value
        return active


class LoopActionFilter(django_filters.FilterSet):
    """GET filters of the audit page (/actions/audit/)."""

    action = django_filters.ChoiceFilter(choices=LoopActionBatch.Action.choices)
    outcome = django_filters.ChoiceFilter(choices=LoopAction.Outcome.choices)
    user = django_filters.CharFilter(label="User", field_name="user__username", lookup_expr="iexact", max_length=150)
    loop = django_filters.CharFilter(label="Loop name contains", field_name="loop__name", lookup_expr="icontains", max_length=63)
    batch = IdFilter(field_name="batch_id")

    class Meta:
        model = LoopAction
        fields: list[str] = []


class ReviewerFilter(django_filters.FilterSet):
    """GET filters of the reviewers pages: the loop list's names and meanings, over answers.

    The time filters select answers by their loop's creation time, as on the loop list,
    so a reviewer's count and the loop list filtered by `reviewer` agree.
    """

    flow_definition = FlowDefinitionFilter(label="Flow definition", choices=[], distinct=False)
    window = django_filters.ChoiceFilter(label="Loops created in", choices=WINDOW_CHOICES, empty_label=None, method="filter_window")
    created_after = UTCDateTimeFilter(
        label="Created after (UTC)",
        field_name="loop_creation_time",
        lookup_expr="gte",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )
    created_before = UTCDateTimeFilter(
        label="Created before (UTC)",
        field_name="loop_creation_time",
        lookup_expr="lt",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )

    class Meta:
        model = HumanAnswer
        fields: list[str] = []
        form = LoopFilterForm  # the same check of the time range

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        if queryset is None:
            queryset = HumanAnswer.objects.all()
        super().__init__(data, queryset, request=request, prefix=prefix)
        flow_definitions = list(FlowDefinition.objects.order_by("name", "region").values_list("arn", "name", "region"))
        field = self.filters["flow_definition"]
        field.extra["choices"] = [(arn, f"{name} ({region})") for arn, name, region in flow_definitions]
        field.extra["names"] = [name for _arn, name, _region in flow_definitions]

    def filter_window(self, qs, name, value):
        delta = WINDOWS.get(value)
        if delta is None:
            return qs
        return qs.filter(loop_creation_time__gte=timezone.now() - delta)

    def flow_definition_ids(self) -> list[int] | None:
        """The selected flow definitions' ids (valid forms only), None when not filtered."""
        values = self.form.cleaned_data.get("flow_definition")
        if not values:
            return None
        return list(FlowDefinition.objects.filter(Q(arn__in=values) | Q(name__in=values)).values_list("id", flat=True))

    def standard_window(self) -> str | None:
        """The window when only `window` (and at most one flow definition) restricts the
        answers: the precomputed figures then apply; else None (computed on request)."""
        data = self.form.cleaned_data
        if data.get("created_after") or data.get("created_before"):
            return None
        ids = self.flow_definition_ids()
        if ids is not None and len(ids) != 1:
            return None
        return data.get("window") or "all"
