"""The stop/delete actions in the dashboard: thin adapters over loops.services.actions.

POST /actions/confirm/  -> the confirmation page (nothing reaches A2I)
POST /actions/execute/  -> re-checks permissions, records the batch, runs or enqueues it
GET  /actions/batches/<id>/  -> progress, summary and per-loop outcomes
GET  /actions/audit/    -> the audit log, filterable, ?_export=csv streams it
"""

from __future__ import annotations

import django_tables2 as tables
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Max
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.views.decorators.http import require_GET, require_POST

from loops import tasks
from loops.filters import LoopActionFilter
from loops.forms import CONFIRM_SAMPLE, ExecuteForm, LoopSelectionForm
from loops.models import HumanLoop, LoopAction, LoopActionBatch
from loops.permissions import AUDIT, user_can_run
from loops.services import actions
from loops.services import audit as audit_service
from loops.tables import LoopActionTable, PlannedLoopTable
from loops.views import exports
from loops.views.access import auditor_required, viewer_required


def _check_permission(request) -> None:
    # Checked before anything else is read from the POST: a forged request from a
    # user without the permission stops here with a 403. (An unknown action is the
    # form's error, a 400.)
    action = request.POST.get("action", "")
    if action in LoopActionBatch.Action.values and not user_can_run(request.user, action):
        raise PermissionDenied("You do not have permission to do this.")


def _bad_request(request, form):
    return render(request, "loops/actions/invalid.html", {"form": form}, status=400)


@viewer_required
@require_POST
def confirm(request):
    """The confirmation page: the selection, what will be skipped and why, a required reason."""
    _check_permission(request)
    form = LoopSelectionForm(request.POST)
    if not form.is_valid():
        return _bad_request(request, form)
    loops = form.resolve_loops(request)
    if loops is None:
        return _bad_request(request, form)
    initial = {key: form.cleaned_data[key] for key in ("action", "loop", "select_all", "filters")}
    if form.cleaned_data["select_all"] and form.cleaned_data.get("upto") is None:
        initial["upto"] = HumanLoop.objects.aggregate(upto=Max("pk"))["upto"] or 0
    else:
        initial["upto"] = form.cleaned_data.get("upto")
    return _render_confirmation(request, form.cleaned_data["action"], loops, ExecuteForm(initial=initial))


def _render_confirmation(request, action, loops, form, status=200):
    plan = actions.plan_action(action, loops, sample=CONFIRM_SAMPLE)
    action_label = LoopActionBatch.Action(action).label
    context = {
        "form": form,
        "plan": plan,
        "plan_table": PlannedLoopTable(plan, action_label),
        "action_label": action_label,
        "threshold": settings.A2I_BULK_ACTION_THRESHOLD,
    }
    return render(request, "loops/actions/confirm.html", context, status=status)


@viewer_required
@require_POST
def execute(request):
    """Record the confirmed batch and run it (small) or enqueue it (large); then show its page."""
    _check_permission(request)
    form = ExecuteForm(request.POST)
    action = request.POST.get("action", "")
    valid = form.is_valid()
    if not valid and not set(form.errors) <= {"reason"}:
        return _bad_request(request, form)
    loops = form.resolve_loops(request)
    if loops is None:
        return _bad_request(request, form)
    if not valid:  # only the reason is missing: show the same confirmation again, with the error
        return _render_confirmation(request, action, loops, form)
    reason = form.cleaned_data["reason"]
    try:
        if form.cleaned_data["select_all"] and actions.prepares_in_background(action, loops):
            # Writing 100,000s of rows takes seconds: the worker selects the loops.
            upto = form.cleaned_data.get("upto")
            if upto is None:
                upto = HumanLoop.objects.aggregate(upto=Max("pk"))["upto"] or 0
            batch = actions.create_prepared_batch(request.user, action, reason, filters=form.cleaned_data["filters"], upto=upto)
        else:
            batch = actions.create_batch(request.user, action, reason, loops)
    except ValueError as exc:
        form.add_error(None, f"Nothing was done: {exc}.")
        return _bad_request(request, form)
    enqueued = tasks.dispatch_batch(batch)
    _report(request, batch, enqueued)
    return redirect("actions:batch", batch_id=batch.pk)


def _report(request, batch, enqueued: bool) -> None:
    """The message after a confirmed batch: queued, or its summary in the colour of how it ended."""
    if batch.state == LoopActionBatch.State.PREPARING:
        messages.info(request, "The selected loops are being prepared by a worker; this page shows the progress.")
    elif enqueued:
        counts = actions.outcome_counts(batch)
        left = counts[LoopAction.Outcome.PENDING]
        done = batch.total - left
        start = f"{done} of {batch.total} loops done here; the other {left}" if done else f"{batch.total} loop{pluralize(batch.total)}"
        messages.info(request, f"{start} {'are' if left != 1 else 'is'} queued for a worker; this page shows the progress.")
    else:
        level = actions.batch_level(batch)
        {"error": messages.error, "warning": messages.warning}.get(level, messages.success)(request, batch.summary)


@viewer_required
@require_GET
def batch_detail(request, batch_id: int):
    """A batch's progress (htmx polls the fragment while it runs), summary and rows.

    Only its creator and auditors see it: the reason and the loops are the audit trail.
    Anyone else gets the same 404 as for a batch that does not exist.
    """
    batch = get_object_or_404(LoopActionBatch.objects.select_related("user"), pk=batch_id)
    if batch.user_id != request.user.pk and not request.user.has_perm(AUDIT):
        raise Http404("No such batch.")
    counts = actions.outcome_counts(batch)
    done = counts[LoopAction.Outcome.PENDING] == 0 and batch.state == LoopActionBatch.State.DONE
    context = {
        "batch": batch,
        "counts": counts,
        "done": done,
        "finished": batch.total - counts["pending"],
        "level": actions.batch_level(batch, counts),
        "preparing": batch.state == LoopActionBatch.State.PREPARING,
    }
    if request.headers.get("HX-Request") and request.GET.get("fragment") == "progress":
        return render(request, "loops/actions/_batch_progress.html", context)
    rows = batch.actions.select_related("loop", "loop__flow_definition").order_by("pk")
    outcome = request.GET.get("outcome")
    if outcome in LoopAction.Outcome.values:
        rows = rows.filter(outcome=outcome)
    context["page"] = Paginator(rows, 100).get_page(request.GET.get("page"))
    context["outcome"] = outcome if outcome in LoopAction.Outcome.values else ""
    context["outcomes"] = LoopAction.Outcome.choices
    return render(request, "loops/actions/batch.html", context)


@auditor_required
@require_GET
def audit(request):
    """The audit log: who did what to which loop, why, and how it ended. ?_export=csv streams it all."""
    queryset = LoopAction.objects.select_related("user", "loop").order_by("-created_at", "-id")
    export = request.GET.get("_export")
    if export is not None and export != "csv":
        # Refused before the page is built: its sort and page links would each repeat the value.
        return exports.unknown_format(export, ["csv"])
    audit_filter = LoopActionFilter(request.GET, queryset=queryset)
    if export == "csv":
        if not audit_filter.is_valid():
            return render(request, "loops/actions/audit.html", {"filter": audit_filter, "table": None}, status=400)
        response = StreamingHttpResponse(audit_service.iter_audit_csv(audit_filter.qs), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="loop-actions.csv"'
        return response
    table = LoopActionTable(audit_filter.qs if audit_filter.is_valid() else queryset.none())
    tables.RequestConfig(request, paginate={"per_page": 50}).configure(table)
    return render(request, "loops/actions/audit.html", {"filter": audit_filter, "table": table})
