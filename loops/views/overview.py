from django.shortcuts import render
from django.template.loader import render_to_string

from loops import charts
from loops.services import page_cache
from loops.services.overview import CHART_MODES, build_overview
from loops.views.access import viewer_required


@viewer_required
def overview(request):
    chart_mode = request.GET.get("chart", "24h")
    if chart_mode not in CHART_MODES:
        chart_mode = "24h"
    # The same for every viewer (nothing in it depends on the user): one render per data version.
    body = page_cache.fragment("overview", [chart_mode], lambda: _render_body(chart_mode))
    return render(request, "loops/overview.html", {"body": body})


def _render_body(chart_mode: str) -> str:
    overview = build_overview(chart_mode=chart_mode)
    context = {"overview": overview, "chart": charts.stacked_bars(overview.created), "chart_modes": CHART_MODES}
    return render_to_string("loops/_overview.html", context)
