"""A2I's EventBridge status-change events, applied to the local copy.

Events arrive two ways, and both use these functions, so they accept and refuse the
same input and write the same rows: the HTTPS endpoint (views.events; one event per
request, or a JSON array) and the SQS consumer (`manage.py consume_events`; one event
per message, or an SNS notification holding one).

- services.event_parsing turns their input into StatusChangeEvent values, or refuses it
  with InvalidEvent; it writes nothing.
- `apply_events` (here) applies a batch in one transaction and returns an ApplyReport
  (the result of each event, the flow definitions whose stats should be refreshed,
  those to discover). Queuing that follow-up work is the caller's job (loops.tasks).

How an event is applied (docs/events.md, "Ordering and duplicates"):

1. an `id` received before is a duplicate: nothing changes;
2. a loop the copy does not have yet is created from the event, with a first-sight
   history row; an unknown flow definition is recorded from its ARN;
3. an event of an earlier loop of the same name (older `creationTime`) is stale; one
   of a later loop (the name reused after a delete) replaces the row, as a sync does;
4. an InProgress or Stopping loop moves to the event's status, with a history row at
   the event's `time` (A2I's clock);
5. a loop already in the event's status keeps it: the event only makes the record
   exact (the history row the sync wrote at the time it noticed gets A2I's time, and
   an empty failure code, reason or output URI is filled in);
6. a loop in another terminal status moves only if the event is newer than the stored
   change, else the event is stale: a late event never moves a loop backwards.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from loops.models import (
    ACTIVE_STATUSES,
    FlowDefinition,
    FlowDefinitionStatus,
    HumanLoop,
    HumanLoopStatus,
    HumanLoopStatusChange,
    ReceivedEvent,
)
from loops.services import page_cache
from loops.services.event_parsing import StatusChangeEvent

Result = ReceivedEvent.Result
Source = HumanLoopStatusChange.Source


@dataclass
class ApplyReport:
    """What apply_events did: one result per event, in the order given."""

    results: list[str]
    # Flow definitions with a loop changed by these events: their overview stats are due.
    flow_definition_ids: set[int] = field(default_factory=set)
    # Flow definitions first heard of from an event (or marked deleted upstream): to discover.
    to_discover: set[int] = field(default_factory=set)
    # Loops these events made Completed: their answers (output.json) are due.
    completed: int = 0

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.results))


@dataclass(slots=True)
class _History:
    id: int | None  # None: written by this batch
    from_status: str
    to_status: str
    observed_at: datetime
    source: str
    dirty: bool = False


@dataclass(slots=True)
class _Loop:
    """A locked loop row as this batch sees it; `exists` is False until its first event
    creates it (rows inserted by this batch start that way)."""

    id: int
    arn: str
    name: str
    flow_definition_id: int
    status: str
    creation_time: datetime
    failure_code: str
    failure_reason: str
    output_s3_uri: str
    status_changed_at: datetime
    deleted_upstream: bool
    exists: bool
    history: list[_History] = field(default_factory=list)
    stored: tuple = ()

    def columns(self) -> tuple:
        return (self.flow_definition_id, self.status, self.creation_time, self.failure_code, self.failure_reason,
                self.output_s3_uri, self.status_changed_at, self.deleted_upstream)


_LOOP_FIELDS = ("id", "arn", "name", "flow_definition_id", "status", "creation_time", "failure_code", "failure_reason",
                "output_s3_uri", "status_changed_at", "deleted_upstream")
# Errors a concurrent writer of the same rows can cause; the batch is simply run again.
# unique_violation: the same event or loop inserted by another transaction meanwhile;
# deadlock_detected: a sync page updating the same loops in another order.
_RETRY_SQLSTATES = {"23505", "40P01", "40001"}
_ATTEMPTS = 3


def apply_events(events: Sequence[StatusChangeEvent], *, transport: str) -> ApplyReport:
    """Apply a batch of parsed events in one transaction (see the module docstring).

    Side effects: creates or updates HumanLoop rows (and FlowDefinition rows for unknown
    flow definitions), adds or corrects HumanLoopStatusChange rows (source "event"), and
    records one ReceivedEvent per event with its result. Nothing else: no task is queued.
    A batch that collides with a concurrent writer of the same rows (the same event
    delivered twice at once, a sync page) is run again, up to 3 times; other database
    errors propagate and nothing of the batch is written.
    """
    if not events:
        return ApplyReport(results=[])
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with transaction.atomic():
                return _apply(events, transport)
        except (IntegrityError, OperationalError) as exc:
            if attempt == _ATTEMPTS or getattr(exc.__cause__, "sqlstate", None) not in _RETRY_SQLSTATES:
                raise
    raise AssertionError("unreachable")


def _apply(events: Sequence[StatusChangeEvent], transport: str) -> ApplyReport:
    now = timezone.now()
    report = ApplyReport(results=[""] * len(events))
    # Most batches only move stored loops: they need neither their flow definitions nor
    # their history, and are a handful of statements.
    locked = HumanLoop.objects.select_for_update().order_by("arn").values_list(*_LOOP_FIELDS)
    # ARN order, so two batches never wait on each other in a cycle.
    rows = {row[1]: row for row in locked.filter(arn__in=sorted({e.loop_arn for e in events}))}
    # Flow definitions matter for a loop to create, or a newer loop of a stored name.
    fds = _flow_definitions(
        [e for e in events if e.loop_arn not in rows or e.creation_time > _millis(rows[e.loop_arn][5])], report
    )
    missing = sorted({e.loop_arn for e in events} - rows.keys())
    created = _insert_loops(events, rows, fds, now)
    if missing:
        # Those inserted here, and any a concurrent writer inserted first (then they exist).
        rows.update((row[1], row) for row in locked.filter(arn__in=missing))
    loops = {}
    for arn, row in rows.items():
        loop = _Loop(*row, exists=arn not in created)
        loop.stored = loop.columns()
        loops[arn] = loop
    # After the locks: a concurrent delivery of the same event locks the same loop, so by
    # now it has committed, and its id is visible here.
    known = set(
        ReceivedEvent.objects.filter(event_id__in={e.id for e in events})
        .exclude(result=Result.DUPLICATE)
        .values_list("event_id", flat=True)
    )
    # History is read only where an event may make a recorded change exact (rule 5).
    _load_history([loops[e.loop_arn] for e in events if loops[e.loop_arn].exists and loops[e.loop_arn].status == e.status])

    # Per loop: its incarnations in creation order, each one's events in time order.
    order = sorted(range(len(events)), key=lambda i: (events[i].loop_arn, events[i].creation_time, events[i].time, events[i].id))
    for i in order:
        event = events[i]
        if event.id in known:
            report.results[i] = Result.DUPLICATE
            continue
        known.add(event.id)  # the same id twice in one batch: the second is a duplicate
        loop = loops[event.loop_arn]
        fd = fds.get(event.flow_definition_arn)
        report.results[i] = _decide(loop, event, fd.pk if fd else loop.flow_definition_id)

    _write(events, report, loops, transport, now)
    if created or report.flow_definition_ids:
        page_cache.data_changed()
    report.completed = sum(
        1 for event, result in zip(events, report.results, strict=True)
        if result == Result.APPLIED and event.status == HumanLoopStatus.COMPLETED
    )
    return report


def _millis(moment: datetime) -> datetime:
    """`moment` at A2I's precision: creationTime has milliseconds, as everywhere in A2I's API."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _flow_definitions(events: Sequence[StatusChangeEvent], report: ApplyReport) -> dict[str, FlowDefinition]:
    """The flow definitions of these events by ARN; unknown ones are recorded from the ARN
    (discovery fills in the rest), and both those and ones marked deleted upstream are
    reported for discovery."""
    arns = {e.flow_definition_arn for e in events}
    if not arns:
        return {}
    found = {fd.arn: fd for fd in FlowDefinition.objects.filter(arn__in=arns).only("id", "arn", "deleted_upstream")}
    missing = sorted(arns - found.keys())
    if missing:
        earliest: dict[str, datetime] = {}
        for e in events:
            earliest[e.flow_definition_arn] = min(e.creation_time, earliest.get(e.flow_definition_arn, e.creation_time))
        FlowDefinition.objects.bulk_create(
            [
                FlowDefinition(
                    arn=arn, name=arn.rpartition("/")[2], region=arn.split(":")[3],
                    # It has loops, so it exists; discovery replaces these with A2I's values.
                    status=FlowDefinitionStatus.ACTIVE, creation_time=earliest[arn],
                )
                for arn in missing
            ],
            ignore_conflicts=True,  # recorded meanwhile by a concurrent batch
        )
        found.update({fd.arn: fd for fd in FlowDefinition.objects.filter(arn__in=missing).only("id", "arn", "deleted_upstream")})
        report.to_discover.update(found[arn].pk for arn in missing)
    report.to_discover.update(fd.pk for fd in found.values() if fd.deleted_upstream)
    return found


def _insert_loops(events: Sequence[StatusChangeEvent], stored: dict, fds: dict[str, FlowDefinition],
                  now: datetime) -> list[str]:
    """INSERT the loops of `events` not in `stored`, unless their ARN exists meanwhile; returns
    the ARNs inserted (in ARN order).

    Each row is written from the event with the latest loop and time, most likely the
    final state, so most new rows need no second write. ON CONFLICT DO NOTHING: a sync
    page or another batch inserting the same loop at the same moment makes this wait
    for it and then skip the row, instead of failing.
    """
    latest: dict[str, StatusChangeEvent] = {}
    for e in events:
        if e.loop_arn not in stored:
            best = latest.get(e.loop_arn)
            if best is None or (e.creation_time, e.time) > (best.creation_time, best.time):
                latest[e.loop_arn] = e
    if not latest:
        return []
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(now)
    rows, params = [], []
    for arn in sorted(latest):
        e = latest[arn]
        rows.append("(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
        params += [fds[e.flow_definition_arn].pk, e.loop_name, e.loop_arn, e.status,
                   ops.adapt_datetimefield_value(e.creation_time), e.failure_code, e.failure_reason, e.output_s3_uri,
                   stamp, stamp, ops.adapt_datetimefield_value(e.time), False]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {HumanLoop._meta.db_table} (flow_definition_id, name, arn, status, creation_time,
                    failure_code, failure_reason, output_s3_uri, first_seen_at, last_seen_at, status_changed_at,
                    deleted_upstream)
                VALUES {", ".join(rows)}
                ON CONFLICT (arn) DO NOTHING
                RETURNING arn""",
            params,
        )
        return sorted(row[0] for row in cursor.fetchall())


def _load_history(loops: list[_Loop]) -> None:
    """Attach these loops' history rows, in the order they were written."""
    by_id = {loop.id: loop for loop in loops}
    if not by_id:
        return
    rows = (
        HumanLoopStatusChange.objects.filter(loop_id__in=by_id)
        .order_by("loop_id", "id")
        .values_list("loop_id", "id", "from_status", "to_status", "observed_at", "source")
    )
    for loop_id, *row in rows:
        by_id[loop_id].history.append(_History(*row))


def _decide(loop: _Loop, event: StatusChangeEvent, fd_id: int) -> str:
    """Apply one event to the in-memory loop (rules 2 to 6 of the module docstring); return its result."""
    if not loop.exists:
        loop.exists = True
        _become(loop, event, fd_id, from_status="")
        return Result.APPLIED
    stored_creation = _millis(loop.creation_time)
    if event.creation_time < stored_creation:
        return Result.STALE
    if event.creation_time > stored_creation:
        # The name was reused after a delete: a new loop, as the sync treats it.
        loop.deleted_upstream = False
        _become(loop, event, fd_id, from_status="")
        return Result.APPLIED
    if loop.status == event.status:
        changed = _fill_in(loop, event)
        last = loop.history[-1] if loop.history else None
        if last is None:
            # First seen by a sync, which writes no row for that: the event says when
            # the loop got the status the sync found it in.
            loop.history.append(_History(None, "", event.status, event.time, Source.EVENT, dirty=True))
            loop.status_changed_at = event.time
            changed = True
        elif last.to_status == event.status and last.source != Source.EVENT:
            # The change was recorded when something noticed it; now we know when it happened.
            last.observed_at, last.source, last.dirty = event.time, Source.EVENT, True
            loop.status_changed_at = event.time
            changed = True
        return Result.APPLIED if changed else Result.DUPLICATE
    if loop.status not in ACTIVE_STATUSES and event.time <= loop.status_changed_at:
        return Result.STALE
    _become(loop, event, fd_id, from_status=loop.status)
    return Result.APPLIED


def _become(loop: _Loop, event: StatusChangeEvent, fd_id: int, *, from_status: str) -> None:
    loop.flow_definition_id = fd_id
    loop.status = event.status
    loop.creation_time = event.creation_time
    loop.failure_code = event.failure_code
    loop.failure_reason = event.failure_reason
    loop.output_s3_uri = event.output_s3_uri or loop.output_s3_uri
    loop.status_changed_at = event.time
    loop.history.append(_History(None, from_status, event.status, event.time, Source.EVENT, dirty=True))


def _fill_in(loop: _Loop, event: StatusChangeEvent) -> bool:
    """Take A2I's failure code, reason and output URI where the copy lacks or differs from them
    (ListHumanLoops has no FailureCode, and the sync computes the output URI)."""
    changed = False
    for name in ("failure_code", "failure_reason", "output_s3_uri"):
        value = getattr(event, name)
        if value and value != getattr(loop, name):
            setattr(loop, name, value)
            changed = True
    return changed


def _write(events, report: ApplyReport, loops: dict[str, _Loop], transport: str, now: datetime) -> None:
    # Plain statements: the ORM's bulk_update builds a CASE per column and row (most of a
    # batch's time when it was used).
    ops = connection.ops
    stamp = ops.adapt_datetimefield_value(now)
    changed = [loop for loop in loops.values() if loop.columns() != loop.stored]
    # What PostgreSQL receives in one round trip at the end: Django's psycopg cursors bind
    # parameters on the client, so one execute may carry several statements.
    statements: list[tuple[str, list]] = []
    if changed:
        rows = [
            (loop.id, loop.flow_definition_id, loop.status, ops.adapt_datetimefield_value(loop.creation_time),
             loop.failure_code, loop.failure_reason, loop.output_s3_uri,
             ops.adapt_datetimefield_value(loop.status_changed_at), loop.deleted_upstream)
            for loop in changed
        ]
        if connection.vendor == "postgresql":
            # One statement for the batch (PostgreSQL plans and runs one UPDATE instead of
            # ten), sent below with the INSERTs.
            values = ", ".join(["(%s::bigint, %s::bigint, %s, %s::timestamptz, %s, %s, %s, %s::timestamptz, %s::boolean)"] * len(rows))
            statements.append((
                f"""UPDATE {HumanLoop._meta.db_table} AS loop SET flow_definition_id = v.fd, status = v.status,
                        creation_time = v.created, failure_code = v.code, failure_reason = v.reason,
                        output_s3_uri = v.uri, status_changed_at = v.changed, deleted_upstream = v.deleted,
                        last_seen_at = %s
                    FROM (VALUES {values}) AS v(id, fd, status, created, code, reason, uri, changed, deleted)
                    WHERE loop.id = v.id""",
                [stamp, *(value for row in rows for value in row)],
            ))
        else:
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"""UPDATE {HumanLoop._meta.db_table} SET flow_definition_id = %s, status = %s, creation_time = %s,
                            failure_code = %s, failure_reason = %s, output_s3_uri = %s, status_changed_at = %s,
                            deleted_upstream = %s, last_seen_at = %s
                        WHERE id = %s""",
                    [(*row[1:], stamp, row[0]) for row in rows],
                )
        # A loop of a reused name is no longer deleted (rule 3); a deleted loop's late
        # event keeps its deletion.
        undeleted = [loop.id for loop in changed if loop.stored[-1] and not loop.deleted_upstream]
        if undeleted:
            HumanLoop.objects.filter(id__in=undeleted).update(deleted_upstream_at=None)
    new_rows, corrected = [], []
    for loop in loops.values():
        for row in loop.history:
            if row.dirty:
                (corrected if row.id is not None else new_rows).append((loop.id, row))
    if new_rows:
        statements.append(_insert_sql(HumanLoopStatusChange, ("loop_id", "from_status", "to_status", "observed_at", "source"), [
            (loop_id, row.from_status, row.to_status, ops.adapt_datetimefield_value(row.observed_at), row.source)
            for loop_id, row in new_rows
        ]))
    statements.append(_insert_sql(ReceivedEvent, ("event_id", "received_at", "event_time", "transport", "loop_id", "status", "result"), [
        (e.id, stamp, ops.adapt_datetimefield_value(e.time), transport, loops[e.loop_arn].id, e.status, result)
        for e, result in zip(events, report.results, strict=True)
    ]))
    with connection.cursor() as cursor:
        if corrected:
            cursor.executemany(
                f"UPDATE {HumanLoopStatusChange._meta.db_table} SET observed_at = %s, source = %s WHERE id = %s",
                [(ops.adapt_datetimefield_value(row.observed_at), row.source, row.id) for _, row in corrected],
            )
        if connection.vendor == "postgresql":
            cursor.execute(";\n".join(sql for sql, _ in statements), [value for _, params in statements for value in params])
        else:
            for sql, params in statements:
                cursor.execute(sql, params)
    report.flow_definition_ids.update(loop.flow_definition_id for loop in changed)
    report.flow_definition_ids.update(loop.stored[0] for loop in changed if loop.stored[0] != loop.flow_definition_id)
    report.flow_definition_ids.update(loop.flow_definition_id for loop in loops.values() if any(r.dirty for r in loop.history))


def _insert_sql(model, columns: tuple[str, ...], rows: list[tuple]) -> tuple[str, list]:
    """One multi-row INSERT (the ORM's bulk_create spends more on preparing ten model
    instances than PostgreSQL spends on writing them): its SQL and parameters."""
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    sql = f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) VALUES {', '.join([placeholders] * len(rows))}"
    return sql, [value for row in rows for value in row]
