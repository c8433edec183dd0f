from django.shortcuts import render

from loops.models import FlowDefinition, SyncRun
from loops.services.overview import sync_banners
from loops.views.access import viewer_required

RECENT_RUNS = 200


@viewer_required
def sync_runs(request):
    failed_only = request.GET.get("outcome") == "failed"
    runs = SyncRun.objects.select_related("flow_definition").order_by("-started_at", "-id")
    if failed_only:
        runs = runs.filter(outcome=SyncRun.Outcome.FAILED)
    context = {
        "runs": runs[:RECENT_RUNS],
        "failed_only": failed_only,
        "flow_definitions": FlowDefinition.objects.filter(deleted_upstream=False).order_by("name", "region"),
        "banners": sync_banners(),
        "limit": RECENT_RUNS,
    }
    return render(request, "loops/sync.html", context)
