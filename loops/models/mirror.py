"""The local copy of A2I's state: flow definitions, loops and their status history.

Rows that mirror A2I (FlowDefinition, HumanLoop) are written only by the sync,
event and action services; nobody edits them by hand. A loop deleted in A2I is kept
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


class AnswersState(models.TextChoices):
    """Where reading a Completed loop's output.json stands (services.answers)."""

    PENDING = "pending", "Not read yet"
    RETRY = "retry", "Unreadable, to be retried"
    INGESTED = "ingested", "Read"
    FAILED = "failed", "Unreadable, given up"


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
    # Unguessable key that lets a status page read this flow definition's badge without a
    # login (set when first needed, by services.badges).
    badge_key = models.CharField(max_length=32, blank=True, db_index=True)

    class Meta:
        ordering = ["name", "region"]
        permissions = [("discover_flowdefinition", "Can run a flow-definition discovery now")]

    def __str__(self) -> str:
        return f"{self.name} ({self.region})"


class HumanLoop(models.Model):
    # Every index costs each of the sync's inserts: no index of its own on
    # flow_definition_id, the partial (flow_definition, ...) indexes below serve the
    # queries by flow definition. No foreign-key constraint in the database either:
    # PostgreSQL checks one with a query per inserted row at commit, 7 % of a first
    # sync's PostgreSQL CPU (docs/performance.md), and only the sync and event ingestion
    # insert loops, for flow definitions they have just read. Flow definitions are never
    # deleted (deleted_upstream marks them); Django still refuses to (PROTECT).
    flow_definition = models.ForeignKey(
        FlowDefinition, on_delete=models.PROTECT, related_name="loops", db_index=False, db_constraint=False
    )
    # name, arn, status and answers_state have the "C" collation on PostgreSQL (migration
    # 0012_identifier_collation: cheaper index comparisons). A migration that alters one
    # of them must keep it.
    name = models.CharField(max_length=63)
    # Unique through Meta.constraints rather than unique=True, which on PostgreSQL also
    # builds a second (varchar_pattern_ops) index for LIKE queries that nothing makes.
    arn = models.CharField("ARN", max_length=1024)
    status = models.CharField(max_length=16, choices=HumanLoopStatus.choices)
    creation_time = models.DateTimeField()
    failure_code = models.CharField(max_length=32, blank=True)
    failure_reason = models.CharField(max_length=1024, blank=True)
    output_s3_uri = models.CharField("output S3 URI", max_length=1024, blank=True)

    first_seen_at = models.DateTimeField()
    # When a sync, an event or an action last wrote this row (unchanged loops are not rewritten).
    last_seen_at = models.DateTimeField()
    # When this row's status last changed, for "stuck" and review-time views: A2I's time
    # when an EventBridge event said so, otherwise when the dashboard observed it.
    status_changed_at = models.DateTimeField()
    # A loop deleted in A2I stays here as history.
    deleted_upstream = models.BooleanField(default=False)
    deleted_upstream_at = models.DateTimeField(null=True, blank=True)

    # The reviewers' answers, read from output.json once the loop is Completed
    # (services.answers; the answers themselves are loops.models.answers.HumanAnswer).
    # Database defaults: the sync inserts loops with its own SQL, naming its columns only.
    last_submission_time = models.DateTimeField(null=True, blank=True)
    # Exact times from the answers: creation to the last submission, creation to the first acceptance.
    review_seconds = models.FloatField(null=True, blank=True)
    queue_wait_seconds = models.FloatField(null=True, blank=True)
    answers_state = models.CharField(
        max_length=8, choices=AnswersState.choices, default=AnswersState.PENDING, db_default=AnswersState.PENDING
    )
    answers_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    # When the next read is due (backoff after a failure), or how long a reader's claim lasts.
    answers_next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Why the file could not be read, or what was left out (an answer too large to keep).
    answers_error = models.CharField(max_length=1024, blank=True, default="", db_default="")

    class Meta:
        ordering = ["-creation_time", "-id"]
        # No local add/change: rows mirror A2I. "delete" means delete *in A2I*.
        default_permissions = ("view",)
        permissions = [
            ("stop_humanloop", "Can stop human loops in A2I"),
            ("delete_humanloop", "Can delete human loops in A2I"),
        ]
        constraints = [
            # One row per loop; the sync looks its page's ARNs up in this index.
            models.UniqueConstraint(fields=["arn"], name="loop_arn_unique"),
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
            # The two status indexes leave Completed loops out: most loops are Completed
            # (87 % of the demo data, more on a healthy account), so most of the sync's
            # inserts skip both, and a filter on Completed reads loop_fd_created or
            # loop_all_created, where nearly every entry matches. Counts of Completed loops
            # are total - the rest, both index-only (services.stats).
            # Loop list filtered by flow definition + a status other than Completed (+ window);
            # overview's oldest InProgress per flow definition; incremental sync's oldest
            # non-terminal loop; the alert rules' InProgress and Failed loops.
            models.Index(
                fields=["flow_definition", "status", "-creation_time"],
                name="loop_fd_status_created",
                condition=Q(deleted_upstream=False) & ~Q(status="Completed"),
            ),
            # Loop list filtered by a status other than Completed across flow definitions (+ window).
            models.Index(
                fields=["status", "-creation_time"],
                name="loop_status_created",
                condition=Q(deleted_upstream=False) & ~Q(status="Completed"),
            ),
            # Overview: how many of a flow definition's loops were deleted in A2I (few:
            # a tiny index, and no FK index to count all of a flow definition's rows).
            models.Index(fields=["flow_definition"], name="loop_fd_deleted", condition=Q(deleted_upstream=True)),
            # Name "contains" search is a scan by nature; exact-name lookups and the
            # admin's search by name use this.
            models.Index(fields=["name"], name="loop_name"),
            # Answers ingestion: Completed loops whose output.json is still to be read, to be
            # read again after a failure, or given up; newest first within each state. Only
            # those loops are in it, so polling and counting them stays cheap whatever the
            # size of the table.
            models.Index(
                fields=["answers_state", "-creation_time"],
                name="loop_answers_unread",
                condition=Q(status="Completed", answers_state__in=["pending", "retry", "failed"]),
            ),
            # Overview and flow-definition pages: exact review times of a flow definition's
            # loops created in the last 30 days (count and most recent samples, index-only).
            models.Index(
                fields=["flow_definition", "-creation_time", "review_seconds"],
                name="loop_fd_reviewed",
                condition=Q(review_seconds__isnull=False, deleted_upstream=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class HumanLoopStatusChange(models.Model):
    """One row per status transition.

    A row with an empty from_status is a first sight: of a loop an event introduced
    (at A2I's time), of a loop re-created under a reused name, or, in rows written
    before 2026-12-02, of any loop. A sync that inserts a loop writes no row: a first
    full sync would write one per loop. That first sight is the loop's first_seen_at,
    in the status it had then (services.loop_state.timeline rebuilds it for the page).

    `observed_at` is A2I's own time of the change when `source` is "event" (the
    EventBridge event's `time`), otherwise when the dashboard observed it.
    """

    class Source(models.TextChoices):
        EVENT = "event", "A2I event"  # the time is A2I's
        SYNC = "sync", "Sync"  # observed: a sync's listing, or "refresh from A2I"
        ACTION = "action", "Action"  # observed: written by a stop/delete action

    # No index of its own: change_loop_observed (loop, observed_at) serves loop_id lookups.
    # No foreign-key constraint in the database either: PostgreSQL checks one with a
    # trigger per inserted row, a large share of a first sync's CPU, and a history row is
    # only written by the transaction that writes its loop (the sync's page statement,
    # services.loop_state). Django still deletes them with their loop (CASCADE).
    loop = models.ForeignKey(
        HumanLoop, on_delete=models.CASCADE, related_name="status_changes", db_index=False, db_constraint=False
    )
    from_status = models.CharField(max_length=16, choices=HumanLoopStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=HumanLoopStatus.choices)
    observed_at = models.DateTimeField()
    # db_default too: the sync's page statements (services.sync_sql) insert history rows
    # in raw SQL without naming this column, and must keep doing so.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.SYNC, db_default=Source.SYNC)

    class Meta:
        ordering = ["observed_at", "id"]
        indexes = [
            # Loop page timeline: WHERE loop_id = ? ORDER BY observed_at.
            models.Index(fields=["loop", "observed_at"], name="change_loop_observed"),
            # Completions and endings in a time window (overview's last 24 h and review-time
            # sample, the failure_rate alert), A2I's or observed transitions only: a sync's
            # first sight of a loop that had already ended says when we looked, so the
            # first-sight rows of older data stay out of this index (a window after a first
            # sync would otherwise hold the whole account). First sights count only for
            # loops created in the window, found from the loop's side
            # (services.stats.first_sight_of_recent_loops, index change_loop_observed).
            models.Index(
                fields=["to_status", "observed_at"],
                name="change_transition_observed",
                condition=Q(from_status__gt="") | Q(source="event"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.loop_id}: {self.from_status or '-'} -> {self.to_status}"
