"""Forms of the stop/delete actions, shared by the dashboard and the admin.

The confirmation of an action is the same everywhere: ReasonForm validates the
reason (the admin uses it alone, the dashboard through ExecuteForm), and
templates/loops/actions/_plan.html shows what will happen.
"""

from __future__ import annotations

from django import forms
from django.http import QueryDict

from loops.fields import MAX_ID, parse_id
from loops.filters import LoopFilter
from loops.models import HumanLoop, LoopActionBatch

REASON_MAX_LENGTH = 2000
# How many of the selected loops a confirmation page lists one by one.
CONFIRM_SAMPLE = 100


class LoopIdsField(forms.Field):
    """Repeatable `loop` values (HumanLoop primary keys, 1 to MAX_ID), as a sorted list of distinct ints.

    How many there can be is bounded by Django's DATA_UPLOAD_MAX_NUMBER_FIELDS (a 400 above).
    """

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        ids = {parse_id(item) for item in value}
        if None in ids:
            raise forms.ValidationError("Invalid loop id: give loop ids from 1 to %(max)s.", code="invalid", params={"max": MAX_ID})
        return sorted(ids)


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
    upto = forms.IntegerField(required=False, min_value=0, max_value=MAX_ID, widget=forms.HiddenInput)

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
        # The loop list's own FilterSet: "all matching" means what the list showed.
        loop_filter = LoopFilter(QueryDict(data.get("filters") or ""), queryset=HumanLoop.objects.all(), request=request)
        if not loop_filter.is_valid():
            errors = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in loop_filter.errors.items())
            self.add_error(None, f"The loop list's filters are invalid ({errors}).")
            return None
        loops = loop_filter.qs
        if data.get("upto") is not None:
            loops = loops.filter(pk__lte=data["upto"])
        return loops


class ReasonForm(forms.Form):
    """The reason every confirmed action needs; it is recorded with every loop."""

    reason = forms.CharField(
        max_length=REASON_MAX_LENGTH,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Required. Recorded in the audit log with every loop.",
        error_messages={
            "required": "Give a reason: it is recorded with every loop.",
            "max_length": f"The reason is too long (at most {REASON_MAX_LENGTH} characters).",
        },
    )


class ExecuteForm(LoopSelectionForm, ReasonForm):
    """The dashboard's confirmation form: the same selection, plus the required reason."""
