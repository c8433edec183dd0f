"""The local copy of A2I's state: flow definitions, loops and their status history.

Rows that mirror A2I (FlowDefinition, HumanLoop) are written only by the sync
and action services; nobody edits them by hand. A loop deleted in A2I is kept
here as history with `deleted_upstream` set.
"""

from django.db import models
from django.db.models import Q


class HumanLoopStatus(models.TextChoices):
    # A2I's exact strings (botocore HumanLoopStatus enum).
    IN_PROGRESS = "InProgress", "In progress"
    COMPLETED = "Completed", "Completed"
    FAILED = "Failed", "Failed"
    STOPPING = "Stopping", "Stopping"
    STOPPED = "Stopped", "Stopped"


# Terminal loops never change again in A2I except by deletion; incremental sync
# relies on this to skip history.
TERMINAL_STATUSES = frozenset({HumanLoopStatus.COMPLETED, HumanLoopStatus.FAILED, HumanLoopStatus.STOPPED})
ACTIVE_STATUSES = frozenset({HumanLoopStatus.IN_PROGRESS, HumanLoopStatus.STOPPING})


class FailureCode(models.TextChoices):
    VALIDATION_ERROR = "ValidationError", "ValidationError"
    EXPIRED = "Expired", "Expired"
    INTERNAL_ERROR = "InternalError", "InternalError"


class FlowDefinitionStatus(models.TextChoices):
    INITIALIZING = "Initializing", "Initializing"
    ACTIVE = "Active", "Active"
    FAILED = "Failed", "Failed"
    DELETING = "Deleting", "Deleting"


class FlowDefinition(models.Model):
    arn = models.CharField("ARN", max_length=1024, unique=True)
    name = models.CharField(max_length=63)
    region = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=FlowDefinitionStatus.choices)
    creation_time = models.DateTimeField()
    failure_reason = models.CharField(max_length=1024, blank=True)

    # From DescribeFlowDefinition.
    output_s3_path = models.CharField("S3 output path", max_length=1024, blank=True)
    role_arn = models.CharField("role ARN", max_length=2048, blank=True)
    workteam_arn = models.CharField("workteam ARN", max_length=256, blank=True)
    human_task_ui_arn = models.CharField("human task UI ARN", max_length=1024, blank=True)
    task_title = models.CharField(max_length=128, blank=True)
    task_description = models.CharField(max_length=255, blank=True)
    task_count = models.PositiveSmallIntegerField(null=True, blank=True)
    task_availability_lifetime_seconds = models.PositiveIntegerField(null=True, blank=True)
    task_time_limit_seconds = models.PositiveIntegerField(null=True, blank=True)
    # The whole DescribeFlowDefinition response (timestamps as ISO strings), for the detail page.
    description = models.JSONField(default=dict, blank=True)

    # Sync bookkeeping.
    discovered_at = models.DateTimeField(auto_now_add=True)
    last_discovered_at = models.DateTimeField(null=True, blank=True)
    deleted_upstream = models.BooleanField(default=False)
    last_sync_started_at = models.DateTimeField(null=True, blank=True)
    last_sync_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_full_sync_succeeded_at = models.DateTimeField(null=True, blank=True)
    last_sync_error = models.TextField(blank=True)
    # At most one sync per flow definition at a time, across all workers: a sync
    # claims the flow definition with a conditional UPDATE on this column (see
    # services.sync); the claim expires so a killed worker cannot block it forever.
    sync_claimed_until = models.DateTimeField(null=True, blank=True)
    # Aggregates the overview reads instead of scanning a million loops per request;
    # refreshed by services.stats after every sync and action.
    stats = models.JSONField(default=dict, blank=True)
    stats_refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "region"]
        permissions = [("discover_flowdefinition", "Can run a flow-definition discovery now")]

    def __str__(self) -> str:
        return f"{self.name} ({self.region})"


class HumanLoop(models.Model):
    flow_definition = models.ForeignKey(FlowDefinition, on_delete=models.PROTECT, related_name="loops")
    name = models.CharField(max_length=63)
    arn = models.CharField("ARN", max_length=1024, unique=True)
    status = models.CharField(max_length=16, choices=HumanLoopStatus.choices)
    creation_time = models.DateTimeField()
    failure_code = models.CharField(max_length=32, blank=True)
    failure_reason = models.CharField(max_length=1024, blank=True)
    output_s3_uri = models.CharField("output S3 URI", max_length=1024, blank=True)

    first_seen_at = models.DateTimeField()
    # When a sync or an action last wrote this row (unchanged loops are not rewritten).
    last_seen_at = models.DateTimeField()
    # When this row's status last changed (observed), for "stuck" and review-time views.
    status_changed_at = models.DateTimeField()
    # A loop deleted in A2I stays here as history.
    deleted_upstream = models.BooleanField(default=False)
    deleted_upstream_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-creation_time", "-id"]
        # No local add/change: rows mirror A2I. "delete" means delete *in A2I*.
        default_permissions = ("view",)
        permissions = [
            ("stop_humanloop", "Can stop human loops in A2I"),
            ("delete_humanloop", "Can delete human loops in A2I"),
        ]
        indexes = [
            # Loop list, no filter: ORDER BY creation_time DESC, id DESC (deep pages), the
            # created_after/created_before window on its own, deleted=on, export of
            # everything. One index over all rows rather than a second partial twin: so few
            # loops are deleted upstream that filtering them on the way costs nothing, and
            # every index is paid for on each of the sync's inserts.
            models.Index(fields=["-creation_time", "-id"], name="loop_all_created"),
            # Loop list filtered by flow definition (+ window); incremental sync's
            # "newest loop seen" (MAX(creation_time) WHERE flow_definition_id = ?).
            models.Index(
                fields=["flow_definition", "-creation_time"],
                name="loop_fd_created",
                condition=Q(deleted_upstream=False),
            ),
            # Loop list filtered by flow definition + status (+ window); overview's oldest
            # InProgress per flow definition; incremental sync's oldest non-terminal loop.
            models.Index(
                fields=["flow_definition", "status", "-creation_time"],
                name="loop_fd_status_created",
                condition=Q(deleted_upstream=False),
            ),
            # Loop list filtered by status across flow definitions (+ window).
            models.Index(
                fields=["status", "-creation_time"],
                name="loop_status_created",
                condition=Q(deleted_upstream=False),
            ),
            # Name "contains" search is a scan by nature; exact-name lookups and the
            # admin's search by name use this.
            models.Index(fields=["name"], name="loop_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class HumanLoopStatusChange(models.Model):
    """One row per observed status transition (from_status is empty on first sight)."""

    # No index of its own: change_loop_observed (loop, observed_at) serves loop_id lookups.
    loop = models.ForeignKey(HumanLoop, on_delete=models.CASCADE, related_name="status_changes", db_index=False)
    from_status = models.CharField(max_length=16, choices=HumanLoopStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=HumanLoopStatus.choices)
    observed_at = models.DateTimeField()

    class Meta:
        ordering = ["observed_at", "id"]
        indexes = [
            # Loop page timeline: WHERE loop_id = ? ORDER BY observed_at.
            models.Index(fields=["loop", "observed_at"], name="change_loop_observed"),
            # Overview: completions and review times in the last 24 h
            # (WHERE to_status = 'Completed' AND observed_at >= now() - 24h).
            models.Index(fields=["to_status", "observed_at"], name="change_status_observed"),
        ]

    def __str__(self) -> str:
        return f"{self.loop_id}: {self.from_status or '-'} -> {self.to_status}"
