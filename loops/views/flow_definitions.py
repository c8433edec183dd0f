from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.http import urlencode

from loops.models import FlowDefinition
from loops.services.overview import summarize_flow_definition
from loops.views.access import viewer_required


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
