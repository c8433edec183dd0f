"""SVG of the dashboard's stacked bar charts (presentation only; the data comes from services).

`stacked_bars` turns buckets of counts by status into the coordinates that
templates/loops/_chart.html draws, and `bars_svg` writes the bars themselves; `day_bars`
does the same for a worker's answers per day (templates/loops/reviewers/_day_chart.html).
No query, no formatting of values.
"""

from __future__ import annotations

from html import escape

from django.utils.safestring import SafeString, mark_safe

from loops.models import HumanLoopStatus

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 220, 44, 22, 10
# Room for a second scale on the right (day_bars' time on task).
PAD_RIGHT = 56
# Axis maxima for durations (seconds) whose quarter ticks read as whole units (15 s, 1 min, 5 min, 6 h...).
NICE_DURATIONS = (4, 8, 20, 40, 60, 240, 480, 1200, 2400, 3600, 4 * 3600, 8 * 3600, 86400, 4 * 86400, 8 * 86400)
STATUSES = [s.value for s in HumanLoopStatus]


def stacked_bars(series, *, label_every: int | None = None) -> dict:
    """Bars stacked by status for `series` (services.overview.CreatedSeries) as SVG coordinates."""
    buckets = series.buckets
    if label_every is None:
        label_every = 3 if len(buckets) <= 24 else 5
    peak = max((sum(counts.values()) for _key, _label, counts in buckets), default=0)
    scale_max = nice_ceiling(peak)
    plot_w = WIDTH - PAD_LEFT
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP  # bars span y = PAD_TOP .. PAD_TOP + plot_h
    slot = plot_w / max(len(buckets), 1)
    bar_w = max(slot * 0.75, 1)
    bars = []
    for index, (key, label, counts) in enumerate(buckets):
        x = PAD_LEFT + index * slot + (slot - bar_w) / 2
        y = PAD_TOP + plot_h
        segments = []
        for status in STATUSES:
            n = counts.get(status, 0)
            if not n:
                continue
            h = plot_h * n / scale_max if scale_max else 0
            y -= h
            segments.append({"status": status, "n": n, "y": round(y, 2), "h": round(h, 2)})
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "label": label,
                "show_label": index % label_every == 0,
                "label_x": round(x + bar_w / 2, 2),
                "total": sum(counts.values()),
                "segments": segments,
                "key": key,
            }
        )
    ticks = (
        [{"value": scale_max * i // 4, "y": round(PAD_TOP + plot_h - plot_h * i / 4, 2)} for i in range(5)]
        if scale_max
        else []
    )
    return {
        "mode": series.mode,
        "title": series.title,
        "width": WIDTH,
        "height": HEIGHT,
        "plot_h": plot_h,
        "plot_top": PAD_TOP,
        "pad_left": PAD_LEFT,
        "bars": bars,
        "ticks": ticks,
        "total": sum(bar["total"] for bar in bars),
        "statuses": STATUSES,
    }


def nice_ceiling(value: int) -> int:
    """A round axis maximum >= value (1, 2, 4, 5, 8 x 10^n), so the quarter ticks are whole where possible."""
    if value <= 0:
        return 0
    magnitude = 1
    while True:
        for step in (1, 2, 4, 5, 8):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def day_bars(days) -> dict:
    """A worker's answers per day as bars, and their median time on task as a line on a
    second scale (services.reviewers.WorkerDay items, oldest first), as SVG coordinates."""
    peak = max((day.answers for day in days), default=0)
    scale_max = nice_ceiling(peak)
    slowest = max((day.time_median for day in days if day.time_median is not None), default=0)
    time_max = next((d for d in NICE_DURATIONS if d >= slowest), int(slowest) + 1) if slowest else 0
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1)
    bars, points = [], []
    for index, day in enumerate(days):
        x = PAD_LEFT + index * slot + (slot - bar_w) / 2
        h = plot_h * day.answers / scale_max if scale_max else 0
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "y": round(PAD_TOP + plot_h - h, 2),
                "h": round(h, 2),
                "n": day.answers,
                "time": day.time_median,
                "key": day.day.isoformat(),
                "label": day.day.strftime("%m-%d"),
                "show_label": index % 5 == 0,
                "label_x": round(x + bar_w / 2, 2),
            }
        )
        if day.time_median is not None and time_max:
            points.append(
                {"x": round(x + bar_w / 2, 2), "y": round(PAD_TOP + plot_h - plot_h * day.time_median / time_max, 2)}
            )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "plot_h": plot_h,
        "plot_top": PAD_TOP,
        "pad_left": PAD_LEFT,
        "right_x": WIDTH - PAD_RIGHT,
        "bars": bars,
        "points": points,
        "line": " ".join(f"{p['x']},{p['y']}" for p in points),
        "ticks": [{"value": scale_max * i // 4, "y": round(PAD_TOP + plot_h - plot_h * i / 4, 2)} for i in range(5)]
        if scale_max
        else [],
        "time_ticks": [{"seconds": time_max * i / 4, "y": round(PAD_TOP + plot_h - plot_h * i / 4, 2)} for i in range(5)]
        if time_max
        else [],
        "total": sum(day.answers for day in days),
    }


def bars_svg(chart: dict) -> SafeString:
    """The <g> element of every bar of `stacked_bars(...)`: tooltip, hover area, segments, label.

    Written directly rather than by the template: a 30-bar chart is about 800 values, and
    the template engine's lookup and localisation of each one made the chart the largest
    part of the overview's CPU time (docs/performance.md, "Dashboard under load"). Values
    are numbers from stacked_bars or escaped text.
    """
    top, plot_h, label_y = chart["plot_top"], chart["plot_h"], chart["height"] - 6
    parts = []
    for bar in chart["bars"]:
        x, w = bar["x"], bar["w"]
        counts = "".join(f", {s['n']} {s['status']}" for s in bar["segments"])
        plural = "" if bar["total"] == 1 else "s"
        parts.append(f"<g><title>{escape(str(bar['key']))}: {bar['total']} loop{plural}{counts}</title>")
        parts.append(f'<rect class="hover" x="{x}" y="{top}" width="{w}" height="{plot_h}"/>')
        for segment in bar["segments"]:
            parts.append(f'<rect class="seg status-{segment["status"].lower()}" x="{x}" y="{segment["y"]}" '
                         f'width="{w}" height="{segment["h"]}"/>')
        if bar["show_label"]:
            parts.append(f'<text class="label" x="{bar["label_x"]}" y="{label_y}" text-anchor="middle">'
                         f"{escape(str(bar['label']))}</text>")
        parts.append("</g>")
    return mark_safe("\n".join(parts))
