"""Status badges of flow definitions: an SVG image and shields.io's endpoint JSON.

A badge says one word: "down" while a rule fires for the flow definition, else "late"
while it has InProgress loops close to expiry, else "up". It is readable without a login
only with the flow definition's unguessable badge key (as healthchecks does), so a status
page or a README can embed it without exposing anything else.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from html import escape

from django.utils import timezone

from loops.models import AlertState, FlowDefinition
from loops.services.alerts import expiring_counts, expiring_cutoffs
from loops.services.overview import NEAR_EXPIRY_FRACTION

COLOURS = {"up": "#4c1", "late": "#fe7d37", "down": "#e05d44"}
SHIELDS_COLOURS = {"up": "brightgreen", "late": "orange", "down": "red"}


def ensure_badge_key(fd: FlowDefinition) -> str:
    """The flow definition's badge key, created on first use. Side effect: one UPDATE then.

    Set only where still empty, so two pages showing a new flow definition at once agree."""
    if not fd.badge_key:
        FlowDefinition.objects.filter(pk=fd.pk, badge_key="").update(badge_key=secrets.token_urlsafe(16))
        fd.badge_key = FlowDefinition.objects.filter(pk=fd.pk).values_list("badge_key", flat=True).get()
    return fd.badge_key


def flow_definitions_for_badge(name: str, key: str | None, *, logged_in: bool) -> list[FlowDefinition]:
    """The flow definitions a badge request may read: the one whose key is given (and name
    matches), or, for a logged-in viewer without a key, every region's flow definition of that name."""
    flow_definitions = FlowDefinition.objects.filter(name=name, deleted_upstream=False)
    if key:
        return list(flow_definitions.filter(badge_key=key)) if len(key) >= 16 else []
    return list(flow_definitions) if logged_in else []


def badge_state(fds: list[FlowDefinition], now: datetime | None = None) -> str:
    """"down", "late" or "up" for these flow definitions together (the worst wins). Two small queries."""
    now = now or timezone.now()
    ids = [fd.pk for fd in fds]
    if AlertState.objects.filter(status=AlertState.Status.FIRING, rule__enabled=True, flow_definition_id__in=ids).exists():
        return "down"
    if any(expiring_counts(expiring_cutoffs(fds, NEAR_EXPIRY_FRACTION, now)).values()):
        return "late"
    return "up"


def shields_document(label: str, state: str) -> dict:
    """shields.io's endpoint format (https://shields.io/badges/endpoint-badge)."""
    return {"schemaVersion": 1, "label": label, "message": state, "color": SHIELDS_COLOURS[state]}


def _text_width(text: str) -> int:
    # Verdana 11px averages about 7 px per character; close enough for a flat badge.
    return 7 * len(text) + 10


def svg(label: str, state: str) -> str:
    """A flat two-part badge in the usual shields style."""
    left, right = _text_width(label), _text_width(state)
    width = left + right
    label_text, state_text = escape(label), escape(state)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{label_text}: {state_text}"><title>{label_text}: {state_text}</title>'
        f'<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>'
        f'<stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{COLOURS[state]}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        f'<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="{left / 2}" y="14">{label_text}</text><text x="{left + right / 2}" y="14">{state_text}</text></g></svg>'
    )
