"""Forms of the dashboard's stop/delete actions and the audit page's filters (issue 5)."""

from __future__ import annotations

import django_filters
from django import forms
from django.http import QueryDict

from loops.models import HumanLoop, LoopAction, LoopActionBatch

REASON_MAX_LENGTH = 2000


class LoopIdsField(forms.Field):
    """Repeatable `loop` values (HumanLoop primary keys), as a sorted list of distinct ints."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        try:
            return sorted({int(item) for item in value})
        except (TypeError, ValueError):
            raise forms.ValidationError("Invalid loop id.", code="invalid") from None


class LoopSelectionForm(forms.Form):
    """What the loop page buttons and the loop list's bulk bar post to /actions/confirm/.

    Either `loop` (repeatable ids) or `select_all=1` with `filters`, the loop list's
    GET query string. `upto` bounds "all matching" to the loops that existed when the
    confirmation page was shown (loops synced afterwards have larger ids), so a
    confirmed bulk action never reaches a loop the user was not shown.
    """

    action = forms.ChoiceField(choices=LoopActionBatch.Action.choices)
    loop = LoopIdsField(required=False)
    select_all = forms.BooleanField(required=False)
    filters = forms.CharField(required=False, max_length=4096)
    upto = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("select_all") and not cleaned.get("loop"):
            raise forms.ValidationError("Select at least one loop.", code="empty")
        return cleaned

    def resolve_loops(self, request=None):
        """The selected loops as a queryset, or None with a form error (e.g. invalid filters)."""
        data = self.cleaned_data
        if not data.get("select_all"):
            return HumanLoop.objects.filter(pk__in=data["loop"]).order_by("-creation_time", "-id")
        from loops.filters import LoopFilter  # the dashboard's FilterSet: the loop list's contract

        loop_filter = LoopFilter(QueryDict(data.get("filters") or ""), queryset=HumanLoop.objects.all(), request=request)
        if not loop_filter.is_valid():
            errors = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in loop_filter.errors.items())
            self.add_error(None, f"The loop list's filters are invalid ({errors}).")
            return None
        loops = loop_filter.qs
        if data.get("upto") is not None:
            loops = loops.filter(pk__lte=data["upto"])
        return loops


class ExecuteForm(LoopSelectionForm):
    """The confirmation page's form: the same selection, plus the required reason."""

    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required. Recorded in the audit log with every loop.",
        error_messages={"required": "Give a reason: it is recorded with every loop."},
    )


class LoopActionFilter(django_filters.FilterSet):
    """GET filters of the audit page (/actions/audit/)."""

    action = django_filters.ChoiceFilter(choices=LoopActionBatch.Action.choices)
    outcome = django_filters.ChoiceFilter(choices=LoopAction.Outcome.choices)
    user = django_filters.CharFilter(label="User", field_name="user__username", lookup_expr="iexact", max_length=150)
    loop = django_filters.CharFilter(label="Loop name contains", field_name="loop__name", lookup_expr="icontains", max_length=63)
    batch = django_filters.NumberFilter(field_name="batch_id", min_value=1)

    class Meta:
        model = LoopAction
        fields: list[str] = []
