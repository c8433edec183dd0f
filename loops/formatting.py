"""Times and durations as the dashboard writes them, for template tags, tables and services alike.

Plain functions with no template machinery, so a service can phrase a banner and the
loop table's fast row renderer can format a timestamp without importing template tags.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe


def as_datetime(value) -> datetime | None:
    """A datetime from a datetime or an ISO-8601 string (stats documents store strings); else None."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    return None


def human_duration(value) -> str:
    """Seconds (or a timedelta) as a short human string: "45 s", "3 min", "2 h 5 min", "4 d 3 h"."""
    if value is None or value == "":
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    negative = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        text = f"{seconds:.2f} s"
    elif seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds // 60:.0f} min"
    elif seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        text = f"{hours:.0f} h {rest // 60:.0f} min" if rest >= 60 else f"{hours:.0f} h"
    else:
        days, rest = divmod(seconds, 86400)
        text = f"{days:.0f} d {rest // 3600:.0f} h" if rest >= 3600 else f"{days:.0f} d"
    return f"-{text}" if negative else text


def reltime(value, now: datetime | None = None) -> str:
    """'3 h ago' / 'in 5 min' relative to `now` (default: the current time)."""
    moment = as_datetime(value)
    if moment is None:
        return "never"
    delta = (now or timezone.now()) - moment
    if abs(delta.total_seconds()) < 5:
        return "just now"
    if delta.total_seconds() >= 0:
        return f"{human_duration(delta)} ago"
    return f"in {human_duration(-delta)}"


def utc(value) -> str:
    """'2026-11-26 17:20:07 UTC', or '—' when there is no time."""
    moment = as_datetime(value)
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def timestamp_html(value, now: datetime | None = None) -> SafeString:
    """A <time> element: the absolute UTC time and, below it, the relative one.

    Stdlib escaping and one f-string rather than format_html: the loop table calls
    this twice per row (see loops.tables.LoopRowRenderer).
    """
    moment = as_datetime(value)
    if moment is None:
        return mark_safe('<span class="muted">—</span>')
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return mark_safe(
        f'<time datetime="{moment.isoformat()}" title="{text}">{text}'
        f'<span class="rel">{escape(reltime(moment, now))}</span></time>'
    )


def percent(value) -> str:
    """A share (0.123) as "12.3 %", or '—'."""
    if value is None:
        return "—"
    return f"{float(value) * 100:.1f} %"
