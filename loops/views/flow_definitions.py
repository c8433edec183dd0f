"""The flow definitions: their list (with "discover now" for operators) and a page per flow definition."""

import logging

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from loops import tasks
from loops.models import FlowDefinition
from loops.permissions import DISCOVER_NOW
from loops.services.overview import summarize_flow_definition
from loops.views.access import requires, viewer_required

logger = logging.getLogger(__name__)

DISCOVER_NOW_KEY = "discover-now"


@viewer_required
def flow_definition_list(request):
    now = timezone.now()
    summaries = [summarize_flow_definition(fd, now=now) for fd in FlowDefinition.objects.order_by("deleted_upstream", "name", "region")]
    return render(request, "loops/flow_definition_list.html", {"summaries": summaries})


@viewer_required
def flow_definition_detail(request, pk: int):
    fd = get_object_or_404(FlowDefinition, pk=pk)
    summary = summarize_flow_definition(fd, now=timezone.now())
    context = {
        "fd": fd,
        "summary": summary,
        "loops_query": urlencode({"flow_definition": fd.arn}),
        "recent_syncs": fd.sync_runs.order_by("-started_at", "-id")[:10],
    }
    return render(request, "loops/flow_definition_detail.html", context)


@requires(DISCOVER_NOW, "operator")
@require_POST
def discover_now(request):
    """Queue a flow-definition discovery now, at most once per A2I_DISCOVER_NOW_INTERVAL (every web process shares the limit)."""
    interval = settings.A2I_DISCOVER_NOW_INTERVAL
    # cache.add is atomic in Redis: of two clicks at once, one queues the discovery.
    if not cache.add(DISCOVER_NOW_KEY, timezone.now().isoformat(), timeout=interval):
        messages.warning(request, f"A discovery was queued less than {interval} s ago; its result appears here shortly.")
        return redirect("loops:flow_definitions")
    try:
        tasks.discover_flow_definitions.delay()
    except Exception:  # the broker is down: say so rather than fail the page
        logger.exception("could not queue a flow-definition discovery")
        cache.delete(DISCOVER_NOW_KEY)
        messages.error(request, "Could not queue the discovery: the task queue is unreachable. Try again later.")
        return redirect("loops:flow_definitions")
    messages.success(request, "Discovery queued: new flow definitions appear here once a worker has run it (usually within seconds).")
    return redirect("loops:flow_definitions")
