"""A2I's EventBridge status-change events as the dashboard received them (services.events).

One row per delivery that was parsed and applied, whichever way it came (the HTTPS
endpoint or an SQS queue). The first delivery of an event `id` is unique (a partial
unique constraint), which is how a redelivered event is recognised; later deliveries
of the same `id` get their own row with result "duplicate", so the table counts every
delivery by its result.
"""

from django.db import models
from django.db.models import Q

from loops.models.mirror import HumanLoop, HumanLoopStatus


class ReceivedEvent(models.Model):
    class Result(models.TextChoices):
        # The event changed the copy: it created the loop (or its flow definition), moved
        # its status, or replaced an observed time or a missing failure code, reason or
        # output URI with A2I's.
        APPLIED = "applied", "Applied"
        # Nothing to do: the same `id` was received before (EventBridge and SQS deliver at
        # least once), or another event already recorded this very change (A2I may send
        # several events, with different ids, for one change).
        DUPLICATE = "duplicate", "Duplicate"
        # Older than what is stored, so it changed nothing: an event of an earlier loop of
        # the same name (deleted, then the name reused), or a different terminal status
        # than one recorded at a later time.
        STALE = "stale", "Stale"
        # There is no "rejected": a request or message that cannot be parsed writes nothing
        # at all (400 on the endpoint; logged and left in its queue by the consumer).

    class Transport(models.TextChoices):
        HTTPS = "https", "HTTPS endpoint"
        SQS = "sqs", "SQS queue"

    # EventBridge's event `id` (a UUID).
    event_id = models.CharField(max_length=64)
    received_at = models.DateTimeField()  # our clock, when it was applied
    event_time = models.DateTimeField()  # the event's `time`: A2I's clock
    transport = models.CharField(max_length=8, choices=Transport.choices)
    # Null only if the loop row is ever removed locally (rows are kept as history).
    loop = models.ForeignKey(HumanLoop, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    status = models.CharField(max_length=16, choices=HumanLoopStatus.choices)  # the event's humanLoopStatus
    result = models.CharField(max_length=16, choices=Result.choices)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            # Dedupe: the first delivery of an id is the only non-duplicate row; its index
            # also serves the lookup of known ids (WHERE event_id IN (...)).
            models.UniqueConstraint(fields=["event_id"], condition=~Q(result="duplicate"), name="event_first_delivery"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.status} ({self.result})"
