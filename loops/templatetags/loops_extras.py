"""Template helpers: UTC times (absolute and relative), durations, readable JSON."""

from __future__ import annotations

import json
from html import escape
from datetime import UTC, datetime, timedelta

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


def _as_datetime(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)
    return None


@register.filter
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


@register.filter
def reltime(value, now=None) -> str:
    """'3 h ago' / 'in 5 min' relative to now."""
    moment = _as_datetime(value)
    if moment is None:
        return "never"
    delta = (now or timezone.now()) - moment
    if abs(delta.total_seconds()) < 5:
        return "just now"
    if delta.total_seconds() >= 0:
        return f"{human_duration(delta)} ago"
    return f"in {human_duration(-delta)}"


@register.filter
def utc(value) -> str:
    moment = _as_datetime(value)
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.simple_tag
def timestamp(value):
    """A <time> element: absolute UTC time and, below it, the relative one."""
    moment = _as_datetime(value)
    if moment is None:
        return format_html('<span class="muted">—</span>')
    return format_html(
        '<time datetime="{}" title="{}">{}<span class="rel">{}</span></time>',
        moment.isoformat(),
        utc(moment),
        utc(moment),
        reltime(moment),
    )


def timestamp_html(moment: datetime | None, now: datetime | None = None) -> SafeString:
    """Same markup as {% timestamp %}, for the loop table's hot path (stdlib escaping, no format_html)."""
    if moment is None:
        return mark_safe('<span class="muted">—</span>')
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return mark_safe(
        f'<time datetime="{moment.isoformat()}" title="{text}">{text}<span class="rel">{escape(reltime(moment, now))}</span></time>'
    )


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for nested parts of inputs and answers (escape it in the template)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


@register.filter
def percent(value) -> str:
    if value is None:
        return "—"
    return f"{float(value) * 100:.1f} %"


@register.filter
def get_item(mapping, key):
    if not mapping:
        return None
    return mapping.get(key)
