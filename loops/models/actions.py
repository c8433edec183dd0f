"""The stop/delete actions: one batch per confirmed request, one audit row per loop."""

from django.conf import settings
from django.db import models

from loops.models.mirror import HumanLoop


class LoopActionBatch(models.Model):
    """One confirmed stop/delete request over one or more loops; its progress is shown while it runs."""

    class Action(models.TextChoices):
        STOP = "stop", "Stop"
        DELETE = "delete", "Delete"
        STOP_AND_DELETE = "stop_and_delete", "Stop, then delete"

    class State(models.TextChoices):
        # "All N matching" selections: the worker is still building the loops' rows.
        PREPARING = "preparing", "Preparing"
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    total = models.PositiveIntegerField(default=0)
    summary = models.TextField(blank=True)
    # What a batch prepared by the worker selects: {"filters": the loop list's query
    # string, "upto": the largest loop id shown on the confirmation page}.
    selection = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "loop action batch"
        verbose_name_plural = "loop action batches"

    def __str__(self) -> str:
        return f"{self.get_action_display()} x{self.total} by {self.user}"


class LoopAction(models.Model):
    """The audit log: one row per attempt to stop or delete one loop in A2I."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"
        # Sent, but A2I's answer never came (read timeout, dropped connection): A2I may
        # have done it. The next sync or DescribeHumanLoop settles it (services.settlement).
        UNKNOWN = "unknown", "Unknown"

    batch = models.ForeignKey(LoopActionBatch, on_delete=models.PROTECT, related_name="actions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    loop = models.ForeignKey(HumanLoop, on_delete=models.PROTECT, related_name="actions")
    action = models.CharField(max_length=16, choices=LoopActionBatch.Action.choices)
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    # Why a loop was skipped, or the error A2I returned.
    detail = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("audit_loopaction", "Can read the audit log and every action batch")]
        indexes = [
            # Loop page: WHERE loop_id = ? ORDER BY created_at DESC.
            models.Index(fields=["loop", "-created_at"], name="action_loop_created"),
            # Batch progress: WHERE batch_id = ? GROUP BY outcome.
            models.Index(fields=["batch", "outcome"], name="action_batch_outcome"),
            # Settlement after every sync: WHERE outcome = 'unknown' (a handful of rows,
            # however long the audit log).
            models.Index(fields=["loop"], condition=models.Q(outcome="unknown"), name="action_unknown_loop"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.loop} -> {self.outcome}"
