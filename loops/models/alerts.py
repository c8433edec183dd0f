"""Alerting: rules, their state per scope, the transitions between states, channels, deliveries.

The shape is healthchecks' (Check, Flip, Channel, Notification): a rule is evaluated every
minute into one AlertState per scope (a flow definition, or none for what is global, such
as the worker heartbeat); every change of state is an AlertTransition row, and
notifications are sent from transitions, one AlertDelivery per channel. "Exactly one
notification per change" therefore follows from the data: a transition is created only by
the evaluation that wins a conditional UPDATE of its state (services.alerts), and a
delivery is unique per (transition, channel).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from loops.models.mirror import FlowDefinition


class AlertChannel(models.Model):
    """Where notifications go: e-mail addresses, a generic webhook, or a Slack-compatible webhook."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        WEBHOOK = "webhook", "Webhook (JSON POST)"
        SLACK = "slack", "Slack-compatible webhook"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Comma-separated e-mail addresses, or the webhook URL (which may carry a secret).
    target = models.CharField(max_length=2000)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # Delivery health, written after every attempt: the alerts page shows a channel whose
    # recent attempts all failed as failing.
    consecutive_failures = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    # This many failed attempts in a row and the channel shows as failing.
    FAILING_AFTER = 3

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def is_failing(self) -> bool:
        return self.consecutive_failures >= self.FAILING_AFTER

    @property
    def display_target(self) -> str:
        """The target without a webhook URL's path, which is often the secret."""
        if self.kind == self.Kind.EMAIL:
            return self.target
        scheme, _, rest = self.target.partition("://")
        host = rest.split("/", 1)[0]
        return f"{scheme}://{host}/…" if "/" in rest else self.target


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        EXPIRING = "expiring", "Loops close to expiry"
        STUCK_STOPPING = "stuck_stopping", "Loops stuck in Stopping"
        FAILURE_RATE = "failure_rate", "Failure rate"
        BACKLOG = "backlog", "Backlog (InProgress count)"
        REVIEW_TIME = "review_time", "Review time p90"
        SYNC_STALE = "sync_stale", "Sync stale or worker down"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # Null: every flow definition, each evaluated (and notified) on its own.
    flow_definition = models.ForeignKey(
        FlowDefinition, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules",
        help_text="Empty: every flow definition, each with its own state.",
    )
    enabled = models.BooleanField(default=True)

    # Parameters; which ones a kind reads is in services.alerts.PARAMETERS (defaults there too).
    share = models.FloatField(
        null=True, blank=True,
        help_text="expiring: share of the task availability lifetime (0.8 = 80 %); failure_rate: threshold (0.1 = 10 %).",
    )
    count = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="expiring: fire from this many loops; backlog: fire above this many InProgress loops; "
        "failure_rate: minimum number of ended loops in the window.",
    )
    minutes = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="stuck_stopping: minutes in Stopping; review_time: p90 above this many minutes; "
        "sync_stale: minutes without a successful sync.",
    )
    window_minutes = models.PositiveIntegerField(null=True, blank=True, help_text="failure_rate: the window, in minutes.")
    failure_code = models.CharField(max_length=32, blank=True, help_text="failure_rate: count only this failure code.")

    # While it keeps firing, notify again every this many hours (empty: never).
    reminder_hours = models.PositiveIntegerField(null=True, blank=True)
    channels = models.ManyToManyField(AlertChannel, blank=True, related_name="rules")
    # Evaluated and recorded, but nothing is sent until then.
    muted_until = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    # Two beat processes by mistake: the evaluation claims the rule with a conditional
    # UPDATE of this column; the other skips it (and the state's own conditional UPDATE
    # is the second guard). Expires so a killed worker cannot block a rule.
    evaluation_claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]
        permissions = [("manage_alerts", "Can manage alert rules and notification channels")]

    def __str__(self) -> str:
        return self.name

    def is_muted(self, now) -> bool:
        return self.muted_until is not None and self.muted_until > now


class AlertState(models.Model):
    """One rule's state for one scope: a flow definition, or none for what is global (the worker
    heartbeat of a sync_stale rule over every flow definition)."""

    class Status(models.TextChoices):
        OK = "ok", "OK"
        FIRING = "firing", "Firing"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    flow_definition = models.ForeignKey(FlowDefinition, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OK)
    # Incremented when an episode starts firing; transitions of one episode share it.
    episode = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)
    # While firing: when the condition was last seen clear (the hold before resolving).
    clear_since = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)
    # What the last evaluation found.
    value = models.FloatField(null=True, blank=True)
    summary = models.TextField(blank=True)
    loops = models.JSONField(default=list, blank=True)  # the first loops found: [{"id", "name", "status"}]
    link = models.CharField(max_length=2000, blank=True)  # path of the filtered loop list (or page) showing it
    # When the finding last changed (an evaluation that finds the same writes nothing; the
    # rule's last_evaluated_at says when it was last evaluated).
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["rule", "flow_definition"]
        constraints = [
            # One state per rule and scope, even when two evaluations create it at once.
            models.UniqueConstraint(fields=["rule", "flow_definition"], name="alertstate_rule_fd",
                                    condition=Q(flow_definition__isnull=False)),
            models.UniqueConstraint(fields=["rule"], name="alertstate_rule_global", condition=Q(flow_definition__isnull=True)),
        ]
        indexes = [
            # Overview banner, badges, the alerts_firing metric: WHERE status = 'firing'.
            models.Index(fields=["status"], name="alertstate_firing", condition=Q(status="firing")),
        ]

    def __str__(self) -> str:
        return f"{self.rule} / {self.flow_definition or 'global'}: {self.status}"


class AlertTransition(models.Model):
    """A change of an AlertState (healthchecks' Flip): notifications are sent from these rows."""

    class Kind(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"
        REMINDER = "reminder", "Still firing"

    state = models.ForeignKey(AlertState, on_delete=models.CASCADE, related_name="transitions")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="transitions")
    flow_definition = models.ForeignKey(FlowDefinition, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    episode = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    summary = models.TextField(blank=True)
    loops = models.JSONField(default=list, blank=True)
    link = models.CharField(max_length=2000, blank=True)
    # Recorded while the rule was muted: no deliveries.
    muted = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The second guard against two racing evaluations: one firing and one resolved
            # row per episode, whatever happens to the state's conditional UPDATE.
            models.UniqueConstraint(fields=["state", "episode", "kind"], name="alerttransition_once",
                                    condition=Q(kind__in=["firing", "resolved"])),
        ]
        indexes = [
            # Alerts page history: ORDER BY created_at DESC.
            models.Index(fields=["-created_at"], name="alerttransition_created"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} {self.kind} @ {self.created_at:%Y-%m-%d %H:%M}"


class AlertDelivery(models.Model):
    """One notification of one transition (or a test) to one channel, with every attempt's outcome."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    transition = models.ForeignKey(AlertTransition, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A sender claims the delivery until then (conditional UPDATE), so a Celery retry and the
    # sweep of overdue deliveries never send it twice.
    claimed_until = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "alert deliveries"
        constraints = [
            models.UniqueConstraint(fields=["transition", "channel"], name="alertdelivery_once",
                                    condition=Q(transition__isnull=False)),
        ]
        indexes = [
            # Alerts page delivery log: ORDER BY created_at DESC.
            models.Index(fields=["-created_at"], name="alertdelivery_created"),
            # The sweep of deliveries still to send: WHERE status IN (pending, retrying, sending).
            models.Index(fields=["next_attempt_at"], name="alertdelivery_due",
                         condition=Q(status__in=["pending", "retrying", "sending"])),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.status} ({self.attempts} attempts)"


class MetricRollup(models.Model):
    """Running totals for the `_total` counters of /metrics, so a scrape never counts a whole
    table: the rows up to `upto_id` (all settled) are summed here by the evaluation tick, and
    a scrape adds only the rows after it (services.metrics)."""

    source = models.CharField(max_length=32, unique=True)
    upto_id = models.BigIntegerField(default=0)
    # "label1|label2" -> count
    counts = models.JSONField(default=dict)
    updated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.source} up to {self.upto_id}"
