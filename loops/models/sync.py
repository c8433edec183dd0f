"""What the sync records about itself: one row per run, and the workers' heartbeats."""

from django.db import models

from loops.models.mirror import FlowDefinition


class SyncRun(models.Model):
    class Kind(models.TextChoices):
        DISCOVERY = "discovery", "Discovery"
        FULL = "full", "Full"
        INCREMENTAL = "incremental", "Incremental"

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    flow_definition = models.ForeignKey(
        FlowDefinition, null=True, blank=True, on_delete=models.CASCADE, related_name="sync_runs"
    )
    region = models.CharField(max_length=32, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # The CreationTimeAfter the listing started from (incremental), null for a full listing.
    listed_from = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    loops_seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    marked_deleted = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # Sync page and overview staleness: latest runs of a flow definition.
            models.Index(fields=["flow_definition", "-started_at"], name="syncrun_fd_started"),
            # Sync page: WHERE outcome = 'failed' ORDER BY started_at DESC.
            models.Index(fields=["outcome", "-started_at"], name="syncrun_outcome_started"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} sync {self.started_at:%Y-%m-%d %H:%M:%S} {self.outcome}"

    @property
    def duration(self):
        if self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class WorkerHeartbeat(models.Model):
    """Written by a periodic task; the dashboard shows a banner when it goes stale."""

    worker = models.CharField(max_length=255, unique=True)
    last_beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.worker} @ {self.last_beat_at:%H:%M:%S}"
