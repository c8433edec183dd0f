"""Per-flow-definition aggregates for the overview, stored on FlowDefinition.stats.

Computing them per request would scan up to a million loops; they are refreshed
instead after every sync and every action, one flow definition at a time.
"""

from django.db.models import Count
from django.utils import timezone

from loops.models import FlowDefinition, HumanLoop


def refresh_flow_definition_stats(flow_definition: FlowDefinition) -> dict:
    """Recompute and store `flow_definition.stats`. Writes one row; never raises for empty data."""
    counts = dict(
        HumanLoop.objects.filter(flow_definition=flow_definition, deleted_upstream=False)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    stats = {"status_counts": counts}
    now = timezone.now()
    FlowDefinition.objects.filter(pk=flow_definition.pk).update(stats=stats, stats_refreshed_at=now)
    flow_definition.stats, flow_definition.stats_refreshed_at = stats, now
    return stats
