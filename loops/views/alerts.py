"""The alerts page: rules with their state, channels, deliveries, history, badges; rule and channel management."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from loops import tasks
from loops.formatting import utc
from loops.forms import MUTE_DURATIONS, AlertChannelForm, AlertRuleForm, MuteForm
from loops.models import AlertChannel, AlertDelivery, AlertRule, AlertState, AlertTransition, FlowDefinition
from loops.permissions import MANAGE_ALERTS
from loops.services import alerts, badges, notify
from loops.views.access import requires, viewer_required

manager_required = requires(MANAGE_ALERTS, "operator")
LOG_SIZE = 50


@viewer_required
def alerts_page(request):
    states = AlertState.objects.select_related("flow_definition").order_by("-status", "flow_definition__name")
    rules = list(
        AlertRule.objects.select_related("flow_definition")
        .prefetch_related("channels", Prefetch("states", queryset=states))
        .order_by("name", "pk")
    )
    now = timezone.now()
    for rule in rules:
        rule.condition = alerts.describe(rule)
        rule.firing = [state for state in rule.states.all() if state.status == AlertState.Status.FIRING]
        rule.last_change = max((state.changed_at for state in rule.states.all() if state.changed_at), default=None)
        rule.muted = rule.is_muted(now)
    can_manage = request.user.has_perm(MANAGE_ALERTS)
    context = {
        "rules": rules,
        "channels": AlertChannel.objects.all(),
        "deliveries": AlertDelivery.objects.select_related(
            "channel", "transition__rule", "transition__flow_definition"
        )[:LOG_SIZE],
        "transitions": AlertTransition.objects.select_related("rule", "flow_definition")[:LOG_SIZE],
        "can_manage": can_manage,
        "mute_form": MuteForm(),
        "badges": _badges(request) if can_manage else [],
    }
    return render(request, "loops/alerts/alerts.html", context)


def _badges(request) -> list[dict]:
    rows = []
    for fd in FlowDefinition.objects.filter(deleted_upstream=False).only("name", "region", "badge_key").order_by("name", "region"):
        key = badges.ensure_badge_key(fd)
        base = request.build_absolute_uri(f"/badges/{fd.name}")
        rows.append({"fd": fd, "svg": f"{base}.svg?key={key}", "json": f"{base}.json?key={key}"})
    return rows


@manager_required
def rule_create(request):
    return _rule_form(request, AlertRule(created_by=request.user))


@manager_required
def rule_edit(request, pk: int):
    return _rule_form(request, get_object_or_404(AlertRule, pk=pk))


def _rule_form(request, rule: AlertRule):
    form = AlertRuleForm(request.POST or None, instance=rule)
    if request.method == "POST" and form.is_valid():
        rule = form.save()
        messages.success(request, f"Rule “{rule.name}” saved: it fires when {alerts.describe(rule)}.")
        return redirect("loops:alerts")
    defaults = {kind: alerts.defaults_text(kind) for kind in AlertRule.Kind.values}
    return render(request, "loops/alerts/rule_form.html", {"form": form, "rule": rule, "defaults": defaults})


@require_POST
@manager_required
def rule_mute(request, pk: int):
    rule = get_object_or_404(AlertRule, pk=pk)
    form = MuteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long to mute the rule.")
        return redirect("loops:alerts")
    duration = form.cleaned_data["duration"]
    until = None if duration == "off" else timezone.now() + MUTE_DURATIONS[duration]
    alerts.mute_rule(rule, until)
    messages.success(request, f"Rule “{rule.name}” muted until {utc(until)}." if until else f"Rule “{rule.name}” unmuted.")
    return redirect("loops:alerts")


@require_POST
@manager_required
def rule_delete(request, pk: int):
    rule = get_object_or_404(AlertRule, pk=pk)
    rule.delete()
    messages.success(request, f"Rule “{rule.name}” deleted, with its history.")
    return redirect("loops:alerts")


@require_POST
@manager_required
def evaluate_now(request):
    tick = alerts.evaluate_rules()
    # The workers send, as after a scheduled evaluation.
    transaction.on_commit(lambda: [tasks.deliver_notification.delay(pk) for pk in tick.deliveries])
    messages.success(
        request, f"Evaluated {tick.evaluated} rule(s): {len(tick.transitions)} change(s), "
        f"{len(tick.deliveries)} notification(s) queued." + (f" {tick.skipped} being evaluated elsewhere." if tick.skipped else ""),
    )
    return redirect("loops:alerts")


@manager_required
def channel_create(request):
    form = AlertChannelForm(request.POST or None, instance=AlertChannel(created_by=request.user))
    if request.method == "POST" and form.is_valid():
        channel = form.save()
        messages.success(request, f"Channel “{channel.name}” added. Send it a test notification to check it.")
        return redirect("loops:alerts")
    return render(request, "loops/alerts/channel_form.html", {"form": form})


@require_POST
@manager_required
def channel_delete(request, pk: int):
    channel = get_object_or_404(AlertChannel, pk=pk)
    channel.delete()
    messages.success(request, f"Channel “{channel.name}” deleted.")
    return redirect("loops:alerts")


@require_POST
@manager_required
def channel_test(request, pk: int):
    channel = get_object_or_404(AlertChannel, pk=pk)
    delivery = notify.send_test(channel)
    if delivery.status == AlertDelivery.Status.SENT:
        messages.success(request, f"Test notification sent to “{channel.name}”.")
    else:
        messages.error(request, f"Test notification to “{channel.name}” failed: {delivery.error}")
    return redirect("loops:alerts")
