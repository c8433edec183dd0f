"""Injected faults: throttling, random server errors and added latency.

The server calls `Faults.before(operation)` before it handles every AWS operation (never
for the `/_local/` control API). Every fault is off by default and every setting is read
live from the shared `Options`, so `POST /_local/config` can switch faults on mid-run.

The order is: latency first (a slow network delays throttled and failed requests too),
then the token bucket (a throttled request is rejected before any work), then the random
error. The quota on active loops (ServiceQuotaExceededException, 402) is not here: the
store enforces it inside StartHumanLoop, where it knows how many loops are InProgress.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from a2i_local import errors


@dataclass
class TokenBucket:
    """A token bucket refilled at `rate` tokens per second up to `burst` tokens."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float, rate: float) -> bool:
        """Refill for the time elapsed, then take one token; False when empty.

        `rate` is passed on every call because throttle_tps may change live; the burst
        follows it (AWS-style: a bucket as deep as one second of traffic, at least 1).
        """
        if rate != self.rate:
            self.rate = rate
            self.burst = max(1.0, rate)
            self.tokens = min(self.tokens, self.burst)
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Faults:
    """Applies the configured faults to one AWS operation call. Thread-safe.

    Options read live on each call: `latency_ms` (sleep before handling),
    `throttle_tps` (None = unlimited; one bucket per operation name, burst max(1, tps)),
    `error_rate` (probability 0..1 of an InternalServerException).
    """

    def __init__(
        self,
        options,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def before(self, operation: str) -> None:
        """Sleep, then raise ThrottlingException or InternalServerException if due.

        Side effects: sleeps `latency_ms`; consumes a token of the operation's bucket.
        Raises errors.ThrottlingException (429) or errors.InternalServerException (500).
        """
        latency_ms = self.options.latency_ms or 0
        if latency_ms > 0:
            self._sleep(latency_ms / 1000.0)
        self._check_throttle(operation)
        error_rate = self.options.error_rate or 0.0
        if error_rate > 0:
            with self._lock:  # random.Random is not documented as thread-safe
                roll = self._rng.random()
            if roll < error_rate:
                raise errors.InternalServerException(
                    f"An internal error occurred while processing {operation} (injected by --error-rate)."
                )

    def _check_throttle(self, operation: str) -> None:
        tps = self.options.throttle_tps
        if tps is None or tps <= 0:
            return
        tps = float(tps)
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(operation)
            if bucket is None:
                burst = max(1.0, tps)
                bucket = self._buckets[operation] = TokenBucket(rate=tps, burst=burst, tokens=burst, updated=now)
            allowed = bucket.take(now, tps)
        if not allowed:
            raise errors.ThrottlingException(f"Rate exceeded for {operation} (limit {tps:g} requests per second).")

    def reset(self) -> None:
        """Forget all buckets (full again on next use); called by /_local/reset."""
        with self._lock:
            self._buckets.clear()
