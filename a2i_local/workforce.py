"""A simulated workforce that makes a local A2I look alive.

Off by default (`--workforce` turns it on; `make run` does). Every
`workforce_tick_seconds` the daemon thread:

1. reviews: for each InProgress loop (oldest first) whose age exceeds its review time,
   completes it with plausible answers from as many distinct workers as its flow
   definition's TaskCount (each with their own acceptance and submission times and time
   spent; a `workforce_disagreement_rate` share of multi-worker loops gets one worker who
   answers differently), or fails it
   (`workforce_failure_rate`, FailureCode InternalError or ValidationError), or leaves it
   untouched forever (`workforce_abandon_rate`), so the store's expiry turns it into
   Failed/Expired when its flow definition's TaskAvailabilityLifetimeInSeconds passes;
2. starts new loops: a Poisson process of `workforce_start_rate` loops per second,
   spread over the Active flow definitions, with realistic JSON input.

Review time and fate are derived from a hash of the loop name, not from the thread's
random state, so a loop gets the same review time on every tick and after a restart.
The 25 workers differ: each has a speed (time on task from about half to twice the
typical) and a weight (how often they pick a task up), both derived from their id.
Review times are log-normal, fitted to `workforce_review_seconds_median` and `_p90`.
All options are read live, so `POST /_local/config` can speed the workforce up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from statistics import NormalDist

from a2i_local import errors
from a2i_local.output import WorkerAnswer

logger = logging.getLogger(__name__)

_STANDARD_NORMAL = NormalDist()
# z-score of the 90th percentile of the standard normal distribution.
Z_P90 = 1.2815515655446004
# Bounds the work of one tick, so a freshly seeded store with thousands of overdue
# InProgress loops drains over a few ticks instead of blocking the store for minutes.
MAX_REVIEWS_PER_TICK = 200
MAX_STARTS_PER_TICK = 100
SCAN_LIMIT = 1000

LABELS = ("cat", "dog", "bird", "car", "invoice", "receipt", "fraud", "legit", "positive", "negative")
WORKERS = tuple(hashlib.sha1(f"worker-{n}".encode()).hexdigest()[:24] for n in range(25))


def _worker_trait(worker_id: str, salt: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{salt}:{worker_id}".encode()).digest()[:4], "big") / 2**32


# Speed multiplies the time on task (0.5 to 2: some reviewers are four times faster than
# others); weight is how often a worker picks a task up (1 to 8: some are much busier).
SPEED = {worker: 0.5 * 4 ** _worker_trait(worker, "speed") for worker in WORKERS}
WEIGHT = {worker: 1 + 7 * _worker_trait(worker, "weight") ** 2 for worker in WORKERS}
FAILURES = (
    ("InternalError", "The worker task could not be completed because of an internal error."),
    ("ValidationError", "The answer submitted by the worker did not match the task template."),
)


@dataclass(frozen=True)
class Fate:
    """What the workforce does with one loop, derived from its name."""

    review_seconds: float
    action: str  # "complete" | "fail" | "abandon"
    rng_seed: int


def sample_review_seconds(u: float, median: float, p90: float) -> float:
    """Inverse CDF of the log-normal with the given median and 90th percentile at quantile u."""
    median = max(median, 1e-6)
    p90 = max(p90, median)
    sigma = (math.log(p90) - math.log(median)) / Z_P90
    return median * math.exp(sigma * _normal_ppf(u))


def _normal_ppf(u: float) -> float:
    """Standard normal inverse CDF, clamped away from 0 and 1 where it is infinite."""
    return _STANDARD_NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))


def fate_of(name: str, options) -> Fate:
    """Deterministic review time and action for the loop called `name`."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    review = sample_review_seconds(
        rng.random(), options.workforce_review_seconds_median, options.workforce_review_seconds_p90
    )
    roll = rng.random()
    if roll < options.workforce_abandon_rate:
        action = "abandon"
    elif roll < options.workforce_abandon_rate + options.workforce_failure_rate:
        action = "fail"
    else:
        action = "complete"
    return Fate(review_seconds=review, action=action, rng_seed=seed)


def make_answers(seed: int, *, task_count: int, created_ms: int, completed_ms: int,
                 disagreement_rate: float) -> list[WorkerAnswer]:
    """Plausible answers of ``task_count`` distinct workers for a loop created at
    ``created_ms`` whose last answer is submitted at ``completed_ms``.

    The workers are drawn by weight (busier workers answer more); each accepts, spends
    a time scaled by their speed, and submits, all within the loop's life; the last
    submission is the completion. The answerContent is the same for all, except that with
    probability ``disagreement_rate`` (multi-worker loops) one worker answers another label.
    Deterministic for a given seed.
    """
    rng = random.Random(seed ^ 0x5EED)
    task_count = max(1, min(int(task_count), 3))
    answer = {"label": rng.choice(LABELS), "confidence": round(rng.uniform(0.55, 1.0), 2)}
    pool, weights, workers = list(WORKERS), [WEIGHT[w] for w in WORKERS], []
    for _ in range(task_count):
        index = rng.choices(range(len(pool)), weights=weights)[0]
        workers.append(pool.pop(index))
        weights.pop(index)
    dissenter = rng.randrange(1, task_count) if task_count > 1 and rng.random() < disagreement_rate else None
    life_ms = max(completed_ms - created_ms, 0)
    answers = []
    for position, worker in enumerate(workers):
        # The last worker submits at completion; the others somewhere in the second half.
        submitted = completed_ms if position == task_count - 1 else created_ms + int(life_ms * rng.uniform(0.5, 1.0))
        # Time spent on the task is a part of the time the loop waited for this reviewer.
        typical = min(life_ms / 1000, 3600.0) * rng.uniform(0.2, 0.6)
        spent = round(min(typical * SPEED[worker], (submitted - created_ms) / 1000), 3)
        content = dict(answer)
        if position == dissenter:
            content["label"] = rng.choice([label for label in LABELS if label != answer["label"]])
        answers.append(WorkerAnswer(content, worker, spent, max(created_ms, submitted - int(spent * 1000)), submitted))
    return answers


def task_count_of(spec: str) -> int:
    """TaskCount (1 to 3) of a flow definition's stored spec (JSON); 1 when absent or unreadable."""
    try:
        count = int(json.loads(spec).get("HumanLoopConfig", {}).get("TaskCount") or 1)
    except (ValueError, TypeError, AttributeError):
        return 1
    return max(1, min(count, 3))


def make_input(rng: random.Random) -> str:
    """Realistic InputContent: what a model predicted, for a human to check."""
    number = rng.randrange(1_000_000)
    label = rng.choice(LABELS)
    return json.dumps(
        {
            "taskObject": f"s3://a2i-local-input/objects/{number:07d}.jpg",
            "prediction": {"label": label, "confidence": round(rng.uniform(0.05, 0.7), 3)},
            "labels": list(LABELS[:4]) if label in LABELS[:4] else list(LABELS[4:]),
            "source": "a2i-local-workforce",
        }
    )


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson-distributed count (Knuth's method; means here are small)."""
    if mean <= 0:
        return 0
    if mean > 30:  # normal approximation keeps exp() away from underflow
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


class Workforce:
    """Daemon thread that reviews and starts loops through the store's methods.

    `.start()`, `.stop(timeout)`; `.tick()` runs one step synchronously and returns
    counts (used by the thread, handy for tests). Races with clients (a loop stopped or
    deleted between the scan and the action) surface as errors.AwsError and are skipped.
    """

    def __init__(self, store, options, *, random_seed: int | None = None) -> None:
        self.store = store
        self.options = options
        self._rng = random.Random(random_seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_start_tick: float | None = None
        self._task_counts: dict[str, int] = {}
        self.totals = {"completed": 0, "failed": 0, "started": 0, "skipped": 0}

    def start(self) -> Workforce:
        self._stop.clear()
        self._last_start_tick = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="a2i-local-workforce", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(max(0.01, float(self.options.workforce_tick_seconds))):
            try:
                self.tick()
            except Exception:  # the simulation must survive anything; say why in the log
                logger.exception("workforce tick failed")

    def tick(self) -> dict:
        """Review due loops, then start new ones. Returns this tick's counts."""
        counts = {"completed": 0, "failed": 0, "started": 0, "skipped": 0}
        self._review(counts)
        self._start_new(counts)
        for key, value in counts.items():
            self.totals[key] += value
        return counts

    def _review(self, counts: dict) -> None:
        now = self.store.now()
        actions = 0
        for loop in self.store.in_progress_loops(SCAN_LIMIT):
            if actions >= MAX_REVIEWS_PER_TICK:
                break
            name = loop["HumanLoopName"]
            fate = fate_of(name, self.options)
            if fate.action == "abandon":
                continue
            if (now - loop["CreationTime"]).total_seconds() < fate.review_seconds:
                continue
            actions += 1
            try:
                if fate.action == "fail":
                    code, reason = FAILURES[fate.rng_seed % len(FAILURES)]
                    self.store.fail_loop(name, code, reason)
                    counts["failed"] += 1
                else:
                    answers = make_answers(
                        fate.rng_seed, task_count=self._task_count(loop["FlowDefinitionArn"]),
                        created_ms=loop["CreationTimeMs"], completed_ms=self.store.now_ms(),
                        disagreement_rate=self.options.workforce_disagreement_rate)
                    self.store.complete_loop(name, answers=answers)
                    counts["completed"] += 1
            except errors.OutputWriteError as exc:
                # S3 is down or misconfigured: every completion would fail the same way,
                # slowly. Say so once and try again next tick.
                counts["skipped"] += 1
                logger.warning("workforce could not write output.json for %s, pausing reviews: %s", name, exc.message)
                break
            except errors.AwsError as exc:  # stopped/deleted meanwhile: not ours any more
                counts["skipped"] += 1
                logger.debug("workforce skipped %s: %s", name, exc.message)

    def _task_count(self, flow_definition_arn: str) -> int:
        if flow_definition_arn not in self._task_counts:
            record = self.store.flow_definitions.by_arn(flow_definition_arn)
            self._task_counts[flow_definition_arn] = task_count_of(record.spec) if record else 1
        return self._task_counts[flow_definition_arn]

    def _start_new(self, counts: dict) -> None:
        now = time.monotonic()
        elapsed = now - (self._last_start_tick if self._last_start_tick is not None else now)
        self._last_start_tick = now
        rate = float(self.options.workforce_start_rate or 0.0)
        if rate <= 0 or elapsed <= 0:
            return
        wanted = min(MAX_STARTS_PER_TICK, poisson(self._rng, rate * elapsed))
        if not wanted:
            return
        arns = self.store.flow_definitions.active_arns()
        if not arns:
            return
        for _ in range(wanted):
            name = f"wf-{int(time.time() * 1000)}-{self._rng.getrandbits(32):08x}"
            try:
                self.store.start_human_loop(name, self._rng.choice(arns), make_input(self._rng))
                counts["started"] += 1
            except errors.AwsError as exc:  # quota reached, flow definition deleted meanwhile, ...
                counts["skipped"] += 1
                logger.debug("workforce could not start %s: %s", name, exc.message)
