from django.shortcuts import render

from loops import charts
from loops.services.overview import CHART_MODES, build_overview
from loops.views.access import viewer_required


@viewer_required
def overview(request):
    chart_mode = request.GET.get("chart", "24h")
    if chart_mode not in CHART_MODES:
        chart_mode = "24h"
    overview = build_overview(chart_mode=chart_mode)
    context = {"overview": overview, "chart": charts.stacked_bars(overview.created), "chart_modes": CHART_MODES}
    return render(request, "loops/overview.html", context)
