"""The reviewers' side: one row per human answer read from a loop's output.json, and the
reviewers page's precomputed figures.

A2I keeps no record of worker activity for human review workflows (docs/a2i-local.md,
behaviour notes §4b): output.json is the only place that says who answered, when they
accepted and submitted, and how long they spent. services.answers reads it once per
Completed loop and writes these rows; nothing else writes them.
"""

from django.db import models
from django.db.models import Q

from loops.models.mirror import FlowDefinition, HumanLoop


class HumanAnswer(models.Model):
    """One entry of output.json's humanAnswers[], with what the agreement rule needs."""

    # No index of its own: answer_loop_index (loop, index) serves loop_id lookups.
    loop = models.ForeignKey(HumanLoop, on_delete=models.CASCADE, related_name="answers", db_index=False)
    # Position in humanAnswers[]: with `loop`, what makes a second read write nothing new.
    index = models.PositiveSmallIntegerField()
    # Copied from the loop, so the reviewers page filters and groups answers without a join;
    # the time filters mean what they mean on the loop list (the loop's creation time).
    flow_definition = models.ForeignKey(FlowDefinition, on_delete=models.CASCADE, related_name="+", db_index=False)
    loop_creation_time = models.DateTimeField()

    worker_id = models.CharField(max_length=256)
    worker_sub = models.CharField(max_length=256, blank=True)
    acceptance_time = models.DateTimeField(null=True, blank=True)
    submission_time = models.DateTimeField(null=True, blank=True)
    time_spent_seconds = models.FloatField(null=True, blank=True)
    # How long the loop waited before this worker took it: acceptance - loop creation.
    queue_wait_seconds = models.FloatField(null=True, blank=True)

    # The answerContent object; null when it was larger than A2I_ANSWERS_MAX_BYTES.
    answer_content = models.JSONField(null=True, blank=True)
    content_bytes = models.PositiveIntegerField(default=0)
    content_too_large = models.BooleanField(default=False)
    # sha256 of the normalised answerContent (services.output_json.normalised_json);
    # empty when the content was too large to read.
    content_hash = models.CharField(max_length=64, blank=True)

    # Agreement, fixed when the file is read (A2I writes output.json once every worker
    # has answered): how many other answers the loop has, how many of them equal this one,
    # and whether all the loop's answers are equal (null: fewer than two comparable answers).
    other_answers = models.PositiveSmallIntegerField(default=0)
    agreeing_answers = models.PositiveSmallIntegerField(default=0)
    loop_agrees = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["loop_id", "index"]
        constraints = [
            # The loop page's answers (WHERE loop_id = ?), and idempotent ingestion.
            models.UniqueConstraint(fields=["loop", "index"], name="answer_loop_index"),
        ]
        indexes = [
            # Loop list `reviewer=` (loop ids answered by a worker) and the worker page
            # (their answers, newest loops first, within a window).
            models.Index(fields=["worker_id", "-loop_creation_time"], name="answer_worker_created"),
            # Reviewers page and flow-definition agreement: answers of a flow definition
            # whose loop was created in a window.
            models.Index(fields=["flow_definition", "-loop_creation_time"], name="answer_fd_created"),
            # Loop list `agreement=agree|disagree`: the loops with a known agreement.
            models.Index(fields=["loop_agrees", "loop"], name="answer_agreement", condition=Q(loop_agrees__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.loop_id}#{self.index} by {self.worker_id}"

    @property
    def agreement(self) -> float | None:
        """Share of the loop's other answers equal to this one (None when there is no other)."""
        return self.agreeing_answers / self.other_answers if self.other_answers else None


class ReviewerStats(models.Model):
    """One worker's figures for one window and scope (all flow definitions, or one).

    Recomputed as a whole by services.reviewers.refresh_reviewer_stats, so that the
    reviewers page reads a few hundred rows instead of aggregating a million answers.
    """

    window = models.CharField(max_length=4)
    # Null: every flow definition.
    flow_definition = models.ForeignKey(
        FlowDefinition, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    worker_id = models.CharField(max_length=256)
    answers = models.PositiveIntegerField()
    loops = models.PositiveIntegerField()
    # Distinct UTC days with at least one submission.
    active_days = models.PositiveIntegerField()
    time_median = models.FloatField(null=True, blank=True)
    time_p90 = models.FloatField(null=True, blank=True)
    wait_median = models.FloatField(null=True, blank=True)
    # This worker's answers / all answers of the scope and window.
    share = models.FloatField()
    # Pairs (this worker's answer, another answer of the same loop) compared, and equal.
    pairs_compared = models.PositiveIntegerField()
    pairs_agreeing = models.PositiveIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "reviewer stats"
        indexes = [
            # The reviewers page: WHERE window = ? AND flow_definition_id IS NULL (or = ?).
            models.Index(fields=["window", "flow_definition", "worker_id"], name="reviewerstats_scope"),
        ]

    def __str__(self) -> str:
        return f"{self.worker_id} ({self.window})"
