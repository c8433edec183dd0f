"""Template helpers: UTC times (absolute and relative), durations, readable JSON.

The formatting itself lives in loops.formatting (services and the loop table use it too);
this module only registers it with the template engine.
"""

from __future__ import annotations

import json

from django import template

from loops import formatting
from loops.charts import bars_svg
from loops.services.actions import offered_actions as offered_actions_for

register = template.Library()

register.filter("human_duration", formatting.human_duration)
register.filter("reltime", formatting.reltime)
register.filter("utc", formatting.utc)
register.filter("percent", formatting.percent)
register.filter("bars_svg", bars_svg)


@register.simple_tag
def timestamp(value):
    """A <time> element: absolute UTC time and, below it, the relative one."""
    return formatting.timestamp_html(value)


@register.filter
def pretty_json(value) -> str:
    """Indented JSON for nested parts of inputs and answers (escape it in the template)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def get_item(mapping, key):
    """mapping[key] in a template ({{ totals|get_item:status }}); None when absent."""
    if not mapping:
        return None
    return mapping.get(key)


@register.simple_tag
def offered_actions(loop, user) -> list[dict]:
    """The stop/delete buttons of the loop page: [{action, label, dom_id}], in display order."""
    return [
        {"action": action.value, "label": action.label, "dom_id": "action-" + action.value.replace("_", "-")}
        for action in offered_actions_for(user, loop)
    ]
