"""Alert rules: evaluate them, move each rule's state per scope, record transitions and the deliveries to send.

One tick (`evaluate_rules`, every minute from Celery beat through loops.tasks):

1. load the flow definitions once (their precomputed stats included) for every rule;
2. per enabled rule: claim it (a conditional UPDATE; a second beat by mistake skips it),
   compute a Finding per scope with a handful of indexed queries (never a scan of the
   loops: every query below names the index it rides), then apply each finding to its
   AlertState;
3. a state that changes writes an AlertTransition and one pending AlertDelivery per channel
   of the rule, in the same transaction as the state's conditional UPDATE, so two racing
   evaluations produce one transition: the loser's UPDATE matches no row.

The caller (the Celery task) hands the returned delivery ids to the workers; this module
sends nothing itself (services.notify does).

States: ok -> firing (notify), firing -> firing every `reminder_hours` (notify again),
firing -> ok only after the condition has stayed clear for A2I_ALERT_HOLD_SECONDS (a rule
that flaps stays firing instead of notifying at every evaluation). A muted rule is still
evaluated and its transitions recorded, marked muted, with no deliveries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from operator import or_
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils import timezone

from loops.formatting import human_duration
from loops.models import (
    AlertChannel,
    AlertDelivery,
    AlertRule,
    AlertState,
    AlertTransition,
    FlowDefinition,
    FlowDefinitionStatus,
    HumanLoop,
    HumanLoopStatus,
    HumanLoopStatusChange,
)
from loops.services import page_cache, stats
from loops.services.overview import HEARTBEAT_STALE_AFTER, NEAR_EXPIRY_FRACTION, latest_heartbeat

logger = logging.getLogger(__name__)

Kind = AlertRule.Kind
# The parameters each kind reads, with their defaults (used when the rule leaves one empty).
PARAMETERS: dict[str, dict[str, object]] = {
    Kind.EXPIRING: {"share": NEAR_EXPIRY_FRACTION, "count": 1},
    Kind.STUCK_STOPPING: {"minutes": 15},
    Kind.FAILURE_RATE: {"share": 0.10, "count": 20, "window_minutes": 60, "failure_code": ""},
    Kind.BACKLOG: {"count": 1000},
    Kind.REVIEW_TIME: {"minutes": 60, "window_minutes": 1440},
    Kind.SYNC_STALE: {"minutes": 10},
}
# How many of the loops found a state keeps, and a notification lists.
SAMPLE = 10
# How long one evaluation may hold a rule before another may take it.
CLAIM = timedelta(minutes=5)
# The loop list's time windows (creation time), smallest first: the failure-rate link uses the
# smallest that covers the rule's window.
LIST_WINDOWS = [("1h", 60), ("24h", 1440), ("7d", 10080), ("30d", 43200)]


@dataclass
class Finding:
    """What one rule found for one scope."""

    firing: bool
    value: float | None
    summary: str
    loops: list[dict] = field(default_factory=list)
    link: str = ""


@dataclass
class Tick:
    evaluated: int = 0
    skipped: int = 0
    transitions: list[int] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)


def parameter(rule: AlertRule, name: str):
    """The rule's value for `name`, or the kind's default when the rule leaves it empty."""
    value = getattr(rule, name)
    return PARAMETERS[rule.kind].get(name) if value in (None, "") else value


def defaults_text(kind: str) -> str:
    return ", ".join(f"{name} {value if value != '' else '(any)'}" for name, value in PARAMETERS[kind].items())


def describe(rule: AlertRule) -> str:
    """One line saying when the rule fires, with its parameters (defaults filled in)."""
    p = {name: parameter(rule, name) for name in PARAMETERS[rule.kind]}
    if rule.kind == Kind.EXPIRING:
        return f"at least {p['count']} InProgress loop(s) older than {p['share']:.0%} of the task availability lifetime"
    if rule.kind == Kind.STUCK_STOPPING:
        return f"a loop in Stopping for more than {p['minutes']} min"
    if rule.kind == Kind.FAILURE_RATE:
        code = f" with failure code {p['failure_code']}" if p["failure_code"] else ""
        return (f"more than {p['share']:.0%} of the loops that ended in the last {p['window_minutes']} min failed{code} "
                f"(from {p['count']} ended loops)")
    if rule.kind == Kind.BACKLOG:
        return f"more than {p['count']} InProgress loops"
    if rule.kind == Kind.REVIEW_TIME:
        return f"review time p90 above {p['minutes']} min, over the loops created in the last {p['window_minutes']} min"
    return f"no successful sync for {p['minutes']} min, or the worker heartbeat stale"


# --- links --------------------------------------------------------------------------


def loop_list_link(fd: FlowDefinition | None, **params) -> str:
    """The path of the loop list filtered to show what a rule found (the list's GET contract)."""
    query = {"flow_definition": fd.arn} if fd else {}
    query.update({key: value for key, value in params.items() if value})
    return f"{reverse('loops:loop_list')}?{urlencode(query, doseq=True)}"


def _sample(queryset, limit: int = SAMPLE) -> list[dict]:
    """The first `limit` loops of an ordered queryset of loops (one flow definition's)."""
    return [
        {"id": pk, "name": name, "status": status}
        for pk, name, status in queryset.values_list("pk", "name", "status")[:limit]
    ]


def _samples(queryset, *order_by: str, fd="flow_definition_id", loop="") -> dict[int, list[dict]]:
    """The first SAMPLE loops of each flow definition in `queryset`, by `order_by`, keyed by
    flow definition id: one query (row_number() over each flow definition's rows) instead
    of one per flow definition, which was most of a minute's tick over 50 of them.

    `fd` is the flow definition's column and `loop` the prefix of the loop's fields, for a
    queryset of history rows ("loop__flow_definition_id", "loop__").
    """
    ranked = (
        queryset.annotate(
            rank=Window(RowNumber(), partition_by=F(fd), order_by=[F(field[1:]).desc() if field.startswith("-")
                                                                    else F(field).asc() for field in order_by]),
        )
        .filter(rank__lte=SAMPLE)
        .order_by(fd, "rank")
        .values_list(fd, f"{loop}pk" if loop else "pk", f"{loop}name", f"{loop}status")
    )
    samples: dict[int, list[dict]] = {}
    for fd_id, pk, name, status in ranked:
        samples.setdefault(fd_id, []).append({"id": pk, "name": name, "status": status})
    return samples


# --- evaluators: (rule, flow definitions in scope, now) -> {flow definition id or None: Finding} ---


def expiring_cutoffs(fds: list[FlowDefinition], share: float, now: datetime) -> dict[int, datetime]:
    """Per flow definition with a known lifetime: loops created before this are past `share` of it."""
    return {
        fd.pk: now - timedelta(seconds=share * fd.task_availability_lifetime_seconds)
        for fd in fds
        if fd.task_availability_lifetime_seconds
    }


def expiring_counts(cutoffs: dict[int, datetime]) -> dict[int, int]:
    """InProgress loops created before each flow definition's cutoff. One query: a BitmapOr of
    range scans of index loop_fd_status_created (fd, InProgress, creation_time < cutoff), so it
    reads only the expiring loops whatever the number of loops."""
    if not cutoffs:
        return {}
    condition = reduce(or_, (Q(flow_definition_id=pk, creation_time__lt=cutoff) for pk, cutoff in cutoffs.items()))
    rows = (
        HumanLoop.objects.filter(condition, status=HumanLoopStatus.IN_PROGRESS, deleted_upstream=False)
        .order_by()
        .values_list("flow_definition_id")
        .annotate(n=Count("*"))
    )
    return dict(rows)


def _expiring(rule, fds, now):
    share, minimum = parameter(rule, "share"), parameter(rule, "count")
    cutoffs = expiring_cutoffs(fds, share, now)
    counts = expiring_counts(cutoffs)
    firing_ids = {pk for pk, n in counts.items() if n >= minimum}
    # Oldest first, from the same index ranges as the counts (loop_fd_status_created).
    samples = _samples(
        HumanLoop.objects.filter(
            reduce(or_, (Q(flow_definition_id=pk, creation_time__lt=cutoffs[pk]) for pk in firing_ids)),
            status=HumanLoopStatus.IN_PROGRESS, deleted_upstream=False,
        ),
        "creation_time", "pk",
    ) if firing_ids else {}
    findings = {}
    for fd in fds:
        if fd.pk not in cutoffs:
            findings[fd.pk] = Finding(False, None, "The task availability lifetime is not known.")
            continue
        n = counts.get(fd.pk, 0)
        firing = n >= minimum
        findings[fd.pk] = Finding(
            firing,
            n,
            f"{n} InProgress loop(s) older than {share:.0%} of the "
            f"{human_duration(fd.task_availability_lifetime_seconds)} task availability lifetime.",
            samples.get(fd.pk, []) if firing else [],
            loop_list_link(fd, status=HumanLoopStatus.IN_PROGRESS, created_before=cutoffs[fd.pk].isoformat(), sort="creation_time"),
        )
    return findings


def _stuck_stopping(rule, fds, now):
    minutes = parameter(rule, "minutes")
    cutoff = now - timedelta(minutes=minutes)
    # Index loop_status_created narrows to the Stopping loops (few), then status_changed_at filters them.
    stuck = HumanLoop.objects.filter(
        status=HumanLoopStatus.STOPPING, deleted_upstream=False, status_changed_at__lt=cutoff,
        flow_definition_id__in=[fd.pk for fd in fds],
    )
    counts = dict(stuck.order_by().values_list("flow_definition_id").annotate(n=Count("*")))
    samples = _samples(stuck, "status_changed_at", "pk") if counts else {}
    findings = {}
    for fd in fds:
        n = counts.get(fd.pk, 0)
        findings[fd.pk] = Finding(
            n > 0,
            n,
            f"{n} loop(s) in Stopping for more than {minutes} min.",
            samples.get(fd.pk, []) if n else [],
            loop_list_link(fd, status=HumanLoopStatus.STOPPING, sort="status_changed_at"),
        )
    return findings


def _failure_rate(rule, fds, now):
    threshold, volume = parameter(rule, "share"), parameter(rule, "count")
    window, code = parameter(rule, "window_minutes"), parameter(rule, "failure_code")
    since = now - timedelta(minutes=window)
    # Loops that ended in the window: their transition to Completed or Failed, A2I's or
    # observed (index change_transition_observed, a range of the window only), plus a sync's
    # first sight of a loop already ended when the loop was created in the window; older
    # first sights would make the first sync of an old account count its whole history.
    ended = [HumanLoopStatus.COMPLETED, HumanLoopStatus.FAILED]
    ids = [fd.pk for fd in fds]
    failed = Q(to_status=HumanLoopStatus.FAILED) & (Q(loop__failure_code=code) if code else Q())
    changes = HumanLoopStatusChange.objects.filter(
        stats.TRANSITION, to_status__in=ended, observed_at__gte=since, loop__flow_definition_id__in=ids
    )
    transitions = (
        changes.order_by().values_list("loop__flow_definition_id")
        .annotate(ended=Count("*"), failed=Count("pk", filter=failed))
    )
    failed_loop = Q(status=HumanLoopStatus.FAILED) & (Q(failure_code=code) if code else Q())
    first_seen = stats.first_sight_of_recent_loops(ids, ended, since=since)
    first_sights = (
        first_seen.values_list("flow_definition_id")
        .annotate(ended=Count("*"), failed=Count("pk", filter=failed_loop))
    )
    figures: dict[int, tuple[int, int]] = {}
    for pk, n_ended, n_failed in [*transitions, *first_sights]:
        before = figures.get(pk, (0, 0))
        figures[pk] = (before[0] + n_ended, before[1] + n_failed)
    # Every entry has at least one ended loop (a row of one of the two GROUP BYs).
    firing_ids = {pk for pk, (n_ended, n_failed) in figures.items() if n_ended >= volume and n_failed / n_ended > threshold}
    # The newest failures of each firing flow definition, for the notification.
    failed_samples = _samples(
        changes.filter(failed, loop__flow_definition_id__in=firing_ids), "-observed_at", "-loop_id",
        fd="loop__flow_definition_id", loop="loop__",
    ) if firing_ids else {}
    list_window = next((name for name, minutes in LIST_WINDOWS if minutes >= window), "all")
    findings = {}
    for fd in fds:
        n_ended, n_failed = figures.get(fd.pk, (0, 0))
        rate = n_failed / n_ended if n_ended else None
        firing = fd.pk in firing_ids
        label = f"failed with {code}" if code else "failed"
        summary = (
            f"{n_failed} of {n_ended} loops that ended in the last {window} min {label} ({rate:.0%}; threshold {threshold:.0%})."
            if n_ended else f"No loop ended in the last {window} min."
        )
        if n_ended and n_ended < volume:
            summary += f" Fewer than {volume} ended: not enough to judge."
        sample = []
        if firing:
            sample = list(failed_samples.get(fd.pk, []))
            if len(sample) < SAMPLE:
                newest_first = first_seen.filter(failed_loop, flow_definition=fd).order_by("-creation_time")
                sample += _sample(newest_first, SAMPLE - len(sample))
        findings[fd.pk] = Finding(
            firing, rate, summary, sample,
            loop_list_link(fd, status=HumanLoopStatus.FAILED, window=list_window, failure_code=code),
        )
    return findings


def _backlog(rule, fds, now):
    limit = parameter(rule, "count")
    findings = {}
    for fd in fds:
        # The precomputed statistics (services.stats), not a COUNT of the loops.
        n = ((fd.stats or {}).get("status_counts") or {}).get(HumanLoopStatus.IN_PROGRESS, 0)
        firing = n > limit
        # One LIMIT query per firing flow definition, not _samples(): a backlog can hold a
        # million InProgress loops, and a window over all of them would rank every one.
        oldest = HumanLoop.objects.filter(
            flow_definition=fd, status=HumanLoopStatus.IN_PROGRESS, deleted_upstream=False
        ).order_by("creation_time")  # index loop_fd_status_created
        findings[fd.pk] = Finding(
            firing, n, f"{n} InProgress loop(s) (limit {limit}).", _sample(oldest) if firing else [],
            loop_list_link(fd, status=HumanLoopStatus.IN_PROGRESS, sort="creation_time"),
        )
    return findings


def _review_time(rule, fds, now):
    limit, window = parameter(rule, "minutes"), parameter(rule, "window_minutes")
    since = now - timedelta(minutes=window)
    findings = {}
    for fd in fds:
        # Exact times where the reviewers' answers were read, else observed completions;
        # one index range per flow definition (services.stats.review_time).
        review = stats.review_time(fd.pk, since=since)
        p90 = review["p90"]
        firing = p90 is not None and p90 > limit * 60
        basis = "exact" if review["source"] == "answers" else "observed"
        summary = (
            f"Review time p90 {human_duration(p90)} over {review['samples']} loops created in the last {window} min "
            f"({basis}; limit {limit} min)."
            if p90 is not None else f"No completed loop created in the last {window} min."
        )
        findings[fd.pk] = Finding(firing, p90, summary, [], reverse("loops:flow_definition", args=[fd.pk]))
    return findings


def _sync_stale(rule, fds, now):
    minutes = parameter(rule, "minutes")
    limit = timedelta(minutes=minutes)
    heartbeat = latest_heartbeat()
    heartbeat_stale = heartbeat is None or now - heartbeat > HEARTBEAT_STALE_AFTER
    heartbeat_text = (
        "No Celery worker has ever reported a heartbeat." if heartbeat is None
        else f"The worker's last heartbeat is {human_duration(now - heartbeat)} old."
    )
    sync_page = reverse("loops:sync")
    findings = {}
    for fd in fds:
        last = fd.last_sync_succeeded_at
        # Only Active flow definitions are synced; a Failed or Deleting one is not stale.
        stale = fd.status == FlowDefinitionStatus.ACTIVE and (last is None or now - last > limit)
        summary = (
            "Never synced successfully." if last is None
            else f"Last successful sync {human_duration(now - last)} ago (limit {minutes} min)."
        )
        if rule.flow_definition_id:
            # One flow definition: its state also covers the worker that syncs it.
            stale = stale or heartbeat_stale
            summary += f" {heartbeat_text}"
        findings[fd.pk] = Finding(stale, (now - last).total_seconds() if last else None, summary, [], sync_page)
    if not rule.flow_definition_id:
        age = (now - heartbeat).total_seconds() if heartbeat else None
        findings[None] = Finding(heartbeat_stale, age, heartbeat_text, [], sync_page)
    return findings


EVALUATORS: dict[str, Callable] = {
    Kind.EXPIRING: _expiring,
    Kind.STUCK_STOPPING: _stuck_stopping,
    Kind.FAILURE_RATE: _failure_rate,
    Kind.BACKLOG: _backlog,
    Kind.REVIEW_TIME: _review_time,
    Kind.SYNC_STALE: _sync_stale,
}


# --- the tick -------------------------------------------------------------------------


def flow_definitions_for_evaluation() -> list[FlowDefinition]:
    """Every flow definition still in A2I, without the big DescribeFlowDefinition document."""
    return list(FlowDefinition.objects.filter(deleted_upstream=False).defer("description").order_by("name", "region"))


def evaluate_rules(*, now: datetime | None = None, rule_ids: list[int] | None = None) -> Tick:
    """Evaluate every enabled rule (or those of `rule_ids`) once; return what changed.

    Side effects: AlertState rows created and updated, AlertTransition and pending
    AlertDelivery rows created, each rule's last_evaluated_at. Nothing is sent. A rule whose
    evaluation raises is logged and skipped; the others still run. Safe to run twice at once:
    a rule claimed by another evaluation is skipped (counted in `skipped`).
    """
    now = now or timezone.now()
    tick = Tick()
    fds = flow_definitions_for_evaluation()
    rules = AlertRule.objects.filter(enabled=True).prefetch_related("channels").order_by("pk")
    if rule_ids is not None:
        rules = rules.filter(pk__in=rule_ids)
    for rule in rules:
        if not _claim(rule, now):
            tick.skipped += 1
            continue
        try:
            in_scope = [fd for fd in fds if fd.pk == rule.flow_definition_id] if rule.flow_definition_id else fds
            findings = EVALUATORS[rule.kind](rule, in_scope, now)
            _apply_findings(rule, findings, now, tick)
            tick.evaluated += 1
        except Exception:
            logger.exception("alert rule %s (%s) could not be evaluated", rule.pk, rule.name)
        finally:
            AlertRule.objects.filter(pk=rule.pk).update(evaluation_claimed_until=None, last_evaluated_at=now)
    return tick


def _claim(rule: AlertRule, now: datetime) -> bool:
    # The row count says who won (healthchecks' sendalerts does the same).
    return bool(
        AlertRule.objects.filter(pk=rule.pk)
        .filter(Q(evaluation_claimed_until__isnull=True) | Q(evaluation_claimed_until__lt=now))
        .update(evaluation_claimed_until=now + CLAIM)
    )


def _apply_findings(rule: AlertRule, findings: dict, now: datetime, tick: Tick) -> None:
    states = {state.flow_definition_id: state for state in rule.states.all()}
    # A scope no longer evaluated (its flow definition deleted upstream) clears.
    for scope in states.keys() - findings.keys():
        findings[scope] = Finding(False, None, "No longer evaluated (the flow definition is gone).")
    for scope, finding in findings.items():
        state = states.get(scope)
        if state is None:
            if not finding.firing:
                continue  # a state row is created the first time a scope fires
            state, _created = AlertState.objects.get_or_create(rule=rule, flow_definition_id=scope)
        transition = apply_finding(rule, state, finding, now)
        if transition is not None:
            page_cache.data_changed()  # the overview's banners show firing alerts
            tick.transitions.append(transition.pk)
            tick.deliveries.extend(transition.delivery_ids)


def apply_finding(rule: AlertRule, state: AlertState, finding: Finding, now: datetime) -> AlertTransition | None:
    """Move `state` (as last read) according to `finding`; return the transition it caused, if any.

    Every change is a conditional UPDATE on the state as it was read (status, episode, and
    for reminders the last notification time): when another evaluation changed it first, the
    UPDATE matches no row and nothing is recorded. The transition and its deliveries are
    written in the same transaction, and the unique constraint alerttransition_once refuses a
    second firing or resolved row for one episode in any case.
    """
    found = {"value": finding.value, "summary": finding.summary, "loops": finding.loops, "link": finding.link,
             "evaluated_at": now}
    current = AlertState.objects.filter(pk=state.pk, status=state.status, episode=state.episode)
    hold = timedelta(seconds=settings.A2I_ALERT_HOLD_SECONDS)
    Status = AlertState.Status

    if state.status == Status.OK and finding.firing:
        changes = {"status": Status.FIRING, "episode": state.episode + 1, "changed_at": now, "clear_since": None,
                   "last_notified_at": now}
        return _transition(rule, state, current, changes, found, AlertTransition.Kind.FIRING, state.episode + 1, now)

    if state.status == Status.FIRING and finding.firing:
        reminder = timedelta(hours=rule.reminder_hours) if rule.reminder_hours else None
        if reminder and state.last_notified_at and now - state.last_notified_at >= reminder:
            changes = {"clear_since": None, "last_notified_at": now}
            return _transition(
                rule, state, current.filter(last_notified_at=state.last_notified_at), changes, found,
                AlertTransition.Kind.REMINDER, state.episode, now,
            )
        _record(state, current, found, clear_since=None)
        return None

    if state.status == Status.FIRING and not finding.firing:
        clear_since = state.clear_since or now
        if now - clear_since >= hold:
            changes = {"status": Status.OK, "changed_at": now, "clear_since": None, "last_notified_at": now}
            return _transition(rule, state, current, changes, found, AlertTransition.Kind.RESOLVED, state.episode, now)
        _record(state, current, found, clear_since=clear_since)  # held firing: the condition must stay clear
        return None

    _record(state, current, found, clear_since=state.clear_since)
    return None


def _record(state: AlertState, current, found: dict, *, clear_since) -> None:
    """Write what the evaluation found, only when it differs from what the state holds: most
    ticks change nothing, and 20 rules over 50 flow definitions would otherwise write a
    thousand rows a minute."""
    # The link is left out: an expiring rule's moves with the clock (created_before=now-share*lifetime),
    # and the one stored when the finding last changed still lists every loop found then.
    unchanged = clear_since == state.clear_since and all(
        getattr(state, name) == value for name, value in found.items() if name not in ("evaluated_at", "link")
    )
    if not unchanged:
        current.update(clear_since=clear_since, **found)


def _transition(rule, state, current, changes, found, kind, episode, now) -> AlertTransition | None:
    muted = rule.is_muted(now)
    if kind == AlertTransition.Kind.RESOLVED and not muted:
        # Nobody was told this episode started (the rule was muted then): do not tell them it ended.
        muted = AlertTransition.objects.filter(state=state, episode=episode, kind=AlertTransition.Kind.FIRING, muted=True).exists()
    try:
        with transaction.atomic():
            if not current.update(**changes, **found):
                return None  # another evaluation moved this state first
            transition = AlertTransition.objects.create(
                state=state, rule=rule, flow_definition_id=state.flow_definition_id, kind=kind, episode=episode,
                created_at=now, muted=muted, value=found["value"], summary=found["summary"], loops=found["loops"],
                link=found["link"],
            )
            channels = [] if muted else list(rule.channels.all())
            deliveries = AlertDelivery.objects.bulk_create(
                [AlertDelivery(transition=transition, channel=channel, created_at=now, next_attempt_at=now) for channel in channels]
            )
    except IntegrityError:
        return None  # alerttransition_once: this episode's firing or resolved row exists already
    transition.delivery_ids = [delivery.pk for delivery in deliveries]
    logger.info("alert %s: %s %s (%s)", rule.name, kind, state.flow_definition_id or "global", found["summary"])
    return transition


# --- rules and what the pages show ------------------------------------------------------


def mute_rule(rule: AlertRule, until: datetime | None) -> None:
    """Mute `rule` until `until` (None: unmute). One UPDATE."""
    AlertRule.objects.filter(pk=rule.pk).update(muted_until=until)
    rule.muted_until = until


def firing_states():
    """Every firing state with its rule and flow definition (index alertstate_firing)."""
    return (
        AlertState.objects.filter(status=AlertState.Status.FIRING, rule__enabled=True)
        .select_related("rule", "flow_definition")
        .order_by("rule__name", "flow_definition__name", "flow_definition__region")
    )


DEFAULT_RULES = [
    ("Loops close to expiry", Kind.EXPIRING),
    ("Sync stale or worker down", Kind.SYNC_STALE),
]


def ensure_default_rules(email: str) -> list[AlertRule]:
    """The rules `make run` starts with (expiring, sync_stale over every flow definition), sending
    to an e-mail channel for `email`. Idempotent: existing rules and channels (by name) are kept."""
    channel, _ = AlertChannel.objects.get_or_create(
        name="Local mail", defaults={"kind": AlertChannel.Kind.EMAIL, "target": email}
    )
    rules = []
    for name, kind in DEFAULT_RULES:
        rule, created = AlertRule.objects.get_or_create(name=name, defaults={"kind": kind})
        if created:
            rule.channels.add(channel)
        rules.append(rule)
    return rules
