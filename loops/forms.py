"""Forms: the stop/delete actions (shared by the dashboard and the admin), alert rules and
channels, API tokens.

The confirmation of an action is the same everywhere: ReasonForm validates the
reason (the admin uses it alone, the dashboard through ExecuteForm), and
templates/loops/actions/_plan.html shows what will happen.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.core.validators import URLValidator, validate_email
from django.http import QueryDict

from loops.fields import MAX_ID, parse_id
from loops.filters import LoopFilter
from loops.models import AlertChannel, AlertRule, FlowDefinition, HumanLoop, LoopActionBatch

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


# --- alerts ----------------------------------------------------------------------------------


class AlertRuleForm(forms.ModelForm):
    """A rule: its kind, scope and parameters (empty parameters take the kind's defaults)."""

    class Meta:
        model = AlertRule
        fields = ["name", "kind", "flow_definition", "share", "count", "minutes", "window_minutes", "failure_code",
                  "reminder_hours", "channels", "enabled"]
        widgets = {"channels": forms.CheckboxSelectMultiple}
        labels = {"flow_definition": "Scope", "count": "Count", "window_minutes": "Window (minutes)",
                  "reminder_hours": "Remind every (hours)"}
        help_texts = {"reminder_hours": "While it keeps firing; empty: no reminders."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["flow_definition"].queryset = FlowDefinition.objects.filter(deleted_upstream=False).only("name", "region")
        self.fields["flow_definition"].empty_label = "All flow definitions (each on its own)"
        self.fields["channels"].queryset = AlertChannel.objects.all()

    def clean(self):
        cleaned = super().clean()
        share = cleaned.get("share")
        if share is not None and not 0 < share <= 1:
            self.add_error("share", "A share is between 0 and 1 (0.8 means 80 %).")
        for name in ("minutes", "window_minutes", "reminder_hours"):
            if cleaned.get(name) == 0:
                self.add_error(name, "Leave it empty for the default, or give at least 1.")
        return cleaned


class AlertChannelForm(forms.ModelForm):
    class Meta:
        model = AlertChannel
        fields = ["name", "kind", "target"]
        labels = {"target": "Addresses or URL"}
        help_texts = {"target": "E-mail: addresses separated by commas. Webhook and Slack: the URL to POST to."}
        widgets = {"target": forms.TextInput(attrs={"size": 60})}

    def clean(self):
        cleaned = super().clean()
        kind, target = cleaned.get("kind"), (cleaned.get("target") or "").strip()
        if not kind or not target:
            return cleaned
        try:
            if kind == AlertChannel.Kind.EMAIL:
                for address in target.split(","):
                    validate_email(address.strip())
            else:
                URLValidator(schemes=["http", "https"])(target)
        except forms.ValidationError:
            self.add_error("target", "Give e-mail addresses separated by commas." if kind == AlertChannel.Kind.EMAIL
                           else "Give an http:// or https:// URL.")
        cleaned["target"] = target
        return cleaned


MUTE_CHOICES = [("1h", "1 hour"), ("4h", "4 hours"), ("24h", "1 day"), ("7d", "1 week"), ("off", "Unmute")]
MUTE_DURATIONS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "24h": timedelta(days=1), "7d": timedelta(days=7)}


class MuteForm(forms.Form):
    duration = forms.ChoiceField(choices=MUTE_CHOICES)


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. “Grafana” or “nightly export”.")
