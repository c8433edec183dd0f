"""Options shared by every A2I Local component.

One mutable instance is built at startup and read LIVE on each use, so the control API
(``POST /_local/config``) can change fault injection and timing while the server runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

VERSION = "0.1.0"

# Fields the control API may change while the server runs. Host, port, db, region and
# account are fixed for the life of a server: changing them live would break ARNs and sockets.
LIVE_FIELDS = frozenset(
    {
        "throttle_tps",
        "error_rate",
        "latency_ms",
        "max_active_loops",
        "stop_delay_seconds",
        "flow_definition_activation_delay",
        "strict_names",
        "workforce_review_seconds_median",
        "workforce_review_seconds_p90",
        "workforce_failure_rate",
        "workforce_abandon_rate",
        "workforce_disagreement_rate",
        "workforce_start_rate",
        "workforce_tick_seconds",
    }
)


@dataclass
class Options:
    host: str = "127.0.0.1"
    port: int = 0
    db: str | None = None  # None = in-memory SQLite
    region: str = "us-east-1"
    account_id: str = "123456789012"
    s3_endpoint: str | None = None
    # Enforce the model's HumanLoopName pattern (docs/a2i-local.md, behaviour notes §1.2).
    strict_names: bool = True
    stop_delay_seconds: float = 2.0  # Stopping -> Stopped
    flow_definition_activation_delay: float = 0.0  # Initializing -> Active
    throttle_tps: float | None = None
    error_rate: float = 0.0
    latency_ms: int = 0
    max_active_loops: int | None = None
    event_webhook: str | None = None
    event_webhook_token: str | None = None  # sent as `Authorization: Bearer <token>`
    event_queue_url: str | None = None  # an SQS queue the events are also sent to
    workforce: bool = False
    workforce_review_seconds_median: float = 120.0
    workforce_review_seconds_p90: float = 900.0
    workforce_failure_rate: float = 0.03
    workforce_abandon_rate: float = 0.02
    # Share of multi-worker loops where one worker answers differently from the others.
    workforce_disagreement_rate: float = 0.1
    workforce_start_rate: float = 0.5
    workforce_tick_seconds: float = 1.0

    def snapshot(self) -> dict:
        """A plain dict copy of every field (for /_local/health and reset)."""
        return dataclasses.asdict(self)

    def restore(self, values: dict) -> None:
        """Set every field from a snapshot, in place (the instance is shared)."""
        for name, value in values.items():
            setattr(self, name, value)
