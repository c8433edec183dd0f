"""Discovery: the flow definitions of every configured region, from SageMaker."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from loops import a2i
from loops.models import FlowDefinition, HumanLoop, SyncRun
from loops.services import page_cache

log = logging.getLogger(__name__)


def flow_definition_fields(described: dict) -> dict:
    """The FlowDefinition columns for one DescribeFlowDefinition response."""
    config = described.get("HumanLoopConfig") or {}
    return {
        "name": described["FlowDefinitionName"],
        "region": a2i.region_of_arn(described["FlowDefinitionArn"]),
        "status": described["FlowDefinitionStatus"],
        "creation_time": described["CreationTime"],
        "failure_reason": described.get("FailureReason") or "",
        "output_s3_path": (described.get("OutputConfig") or {}).get("S3OutputPath") or "",
        "role_arn": described.get("RoleArn") or "",
        "workteam_arn": config.get("WorkteamArn") or "",
        "human_task_ui_arn": config.get("HumanTaskUiArn") or "",
        "task_title": config.get("TaskTitle") or "",
        "task_description": config.get("TaskDescription") or "",
        "task_count": config.get("TaskCount"),
        "task_availability_lifetime_seconds": config.get("TaskAvailabilityLifetimeInSeconds"),
        "task_time_limit_seconds": config.get("TaskTimeLimitInSeconds"),
        # JSONField stores JSON only: datetimes become ISO strings.
        "description": json.loads(json.dumps(described, cls=DjangoJSONEncoder)),
    }


def discover_flow_definitions(regions: list[str] | None = None) -> list[FlowDefinition]:
    """Upsert every flow definition of `regions` (default settings.A2I_REGIONS); return them.

    One ListFlowDefinitions listing and one DescribeFlowDefinition per flow
    definition and region. Flow definitions of a listed region that are no longer
    listed are marked deleted upstream, and so are their loops (A2I deletes a flow
    definition only after deleting all its loops). Each region gets a SyncRun of
    kind "discovery". ClientError / A2IUnavailable: that region's run is marked
    failed, nothing of that region is changed, and the exception propagates.
    """
    found: list[FlowDefinition] = []
    for region in regions or settings.A2I_REGIONS:
        found.extend(_discover_region(region))
    return found


def _discover_region(region: str) -> list[FlowDefinition]:
    now = timezone.now()
    run = SyncRun.objects.create(kind=SyncRun.Kind.DISCOVERY, region=region, started_at=now)
    try:
        described = []
        for summary in a2i.iter_flow_definitions(region):
            try:
                described.append(a2i.describe_flow_definition(region, summary["FlowDefinitionName"]))
            except a2i.ClientError as exc:
                # Deleted between the listing and the describe: it is simply gone.
                if a2i.error_code(exc) not in ("ResourceNotFound", "ResourceNotFoundException"):
                    raise
    except (a2i.ClientError, a2i.A2IUnavailable) as exc:
        SyncRun.objects.filter(pk=run.pk).update(
            outcome=SyncRun.Outcome.FAILED, error=a2i.error_message(exc), finished_at=timezone.now()
        )
        raise

    flow_definitions, created_count = [], 0
    with transaction.atomic():
        for item in described:
            fields = flow_definition_fields(item)
            fields.update(last_discovered_at=now, deleted_upstream=False)
            fd, created = FlowDefinition.objects.update_or_create(arn=item["FlowDefinitionArn"], defaults=fields)
            flow_definitions.append(fd)
            created_count += created
        gone = FlowDefinition.objects.filter(region=region, deleted_upstream=False).exclude(
            arn__in=[fd.arn for fd in flow_definitions]
        )
        gone_ids = list(gone.values_list("id", flat=True))
        FlowDefinition.objects.filter(id__in=gone_ids).update(deleted_upstream=True)
        loops_deleted = HumanLoop.objects.filter(flow_definition_id__in=gone_ids, deleted_upstream=False).update(
            deleted_upstream=True, deleted_upstream_at=now, last_seen_at=now
        )
        page_cache.data_changed()
        SyncRun.objects.filter(pk=run.pk).update(
            outcome=SyncRun.Outcome.SUCCEEDED,
            finished_at=timezone.now(),
            pages=1,
            loops_seen=len(flow_definitions),  # for a discovery run: flow definitions seen
            created=created_count,
            marked_deleted=len(gone_ids),
        )
    if gone_ids:
        log.info("region %s: %d flow definitions gone, %d loops marked deleted", region, len(gone_ids), loops_deleted)
    return flow_definitions
