"""The sync's bulk writes for one page: insert new loops, read the stored ones, update changed ones.

On PostgreSQL a page is one statement over arrays (`unnest`) that inserts the new loops
and returns the rows stored before, plus one UPDATE (with its history rows) when some
loops changed. Inserting a loop writes no history row: its first sight is the row's
first_seen_at, in the status it had then (services.loop_state.timeline), so a first full
sync does not write a second row, and its index entry, per loop. The ORM equivalent
(bulk_create of 200 model instances per page) made a full sync several times slower.
Other databases (SQLite for `make run`) use the ORM; the rows written are the same. Every
function runs inside the caller's transaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import DatabaseError, connection

from loops.models import HumanLoop, HumanLoopStatusChange

LOOPS = HumanLoop._meta.db_table


@dataclass(slots=True)
class StoredLoop:
    id: int
    status: str
    creation_time: datetime
    failure_reason: str
    deleted_upstream: bool
    flow_definition_id: int


@dataclass(slots=True)
class LoopRow:
    """One listed loop as the sync writes it."""

    name: str
    arn: str
    status: str
    creation_time: datetime
    failure_reason: str
    output_s3_uri: str


class ListedPage:
    """The loops of a page as columns, the form the INSERT binds (one array per column).

    `output_prefix` is output_uri()'s prefix: on PostgreSQL the INSERT builds each new
    loop's output URI from it, so the sync process does not format one per listed loop.
    """

    __slots__ = ("arn_prefix", "output_prefix", "names", "arns", "statuses", "created", "reasons", "index")

    def __init__(self, arn_prefix: str, output_prefix: str):
        self.arn_prefix, self.output_prefix = arn_prefix, output_prefix
        self.names: list[str] = []
        self.arns: list[str] = []
        self.statuses: list[str] = []
        self.created: list[datetime] = []
        self.reasons: list[str] = []
        self.index: dict[str, int] = {}  # ARN -> position

    def add(self, name: str, status: str, created: datetime, reason: str) -> None:
        arn = self.arn_prefix + name
        if arn in self.index:  # A2I lists a name once; a repeat replaces the earlier entry
            position = self.index[arn]
            self.statuses[position], self.created[position], self.reasons[position] = status, created, reason
            return
        self.index[arn] = len(self.arns)
        self.names.append(name)
        self.arns.append(arn)
        self.statuses.append(status)
        self.created.append(created)
        self.reasons.append(reason)

    def __len__(self) -> int:
        return len(self.arns)

    def fields(self, arn: str) -> tuple[str, datetime, str]:
        """(status, creation time, failure reason) of a listed loop."""
        i = self.index[arn]
        return self.statuses[i], self.created[i], self.reasons[i]

    def row(self, arn: str) -> LoopRow:
        i = self.index[arn]
        name, created = self.names[i], self.created[i]
        return LoopRow(name, arn, self.statuses[i], created, self.reasons[i], output_uri(self.output_prefix, name, created))

    def rows(self) -> list[LoopRow]:
        return [self.row(arn) for arn in self.arns]


def output_uri(prefix: str, name: str, created: datetime) -> str:
    """Where A2I writes the loop's output.json (ListHumanLoops does not say; DescribeHumanLoop does).

    A2I's layout: <S3OutputPath>/<flow definition name>/YYYY/MM/DD/hh/mm/ss/<loop name>/output.json,
    the date being the loop's creation time in UTC; `prefix` is everything before the date
    ("" when the flow definition has no output path: no URI). Replaced by the described
    URI on refresh. OUTPUT_URI_SQL is the same in SQL.
    """
    if not prefix:
        return ""
    created = created.astimezone(UTC) if created.tzinfo else created
    return f"{prefix}{created:%Y/%m/%d/%H/%M/%S}/{name}/output.json"


# output_uri() for the INSERT's input rows `i` (parameter `prefix`); to_char's fields are
# numeric, so the locale does not matter.
OUTPUT_URI_SQL = """CASE WHEN %(prefix)s::text = '' THEN '' ELSE
    %(prefix)s::text || to_char(i.created AT TIME ZONE 'UTC', 'YYYY/MM/DD/HH24/MI/SS') || '/' || i.name || '/output.json' END"""


@dataclass(slots=True)
class LoopChange:
    """A stored loop whose listed fields differ; `from_status` None = status unchanged (no history row)."""

    id: int
    row: LoopRow
    from_status: str | None


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def configure_page_session() -> None:
    """Apply the page-writing settings to this thread's connection (see page_write_session).

    - `synchronous_commit = off`: a page's COMMIT does not wait for the WAL flush. Safe
      because every row the sync writes can be re-derived from A2I: a PostgreSQL crash
      loses at most the last fraction of a second of pages (never corrupts them), and
      the next sync writes them again. Actions keep full durability.
    - `enable_seqscan = off`: the per-page lookup by ARN must use the unique index. On a
      table that grows from empty during a first full sync, the planner's statistics
      still say "tiny table" and it picks a sequential scan per page, which makes the
      sync quadratic.
    - `plan_cache_mode = force_generic_plan`: the page statements are prepared, but
      PostgreSQL keeps planning a prepared statement for each execution while a plan for
      its actual parameters looks cheaper than the generic one, as with these arrays:
      planning was about 3 % of a first sync's PostgreSQL CPU in a profile (perf). The
      generic plan is the same plan (index probes, enable_seqscan being off).
    """
    if _postgres():
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off; SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan")


@contextmanager
def page_write_session():
    """configure_page_session() for the duration of the block, reset on the way out
    (the connection is shared with everything else this thread does)."""
    if not _postgres():
        yield
        return
    configure_page_session()
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit; RESET enable_seqscan; RESET plan_cache_mode")
        except DatabaseError:
            pass  # the connection is gone, and the session settings with it


def _array_cursor():
    """A psycopg cursor with server-side binding on Django's connection (same transaction).

    Django's psycopg backend binds parameters client-side, quoting every array element
    in Python; server-side binding sends the arrays as parameters, and `%b` placeholders
    send them in binary (no per-element quoting at all).
    """
    import psycopg

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _fetch_stored_orm(arns: list[str]) -> dict[str, StoredLoop]:
    """The stored rows of these ARNs, by ARN (one query, served by the unique ARN index)."""
    rows = HumanLoop.objects.filter(arn__in=arns).values_list(
        "arn", "id", "status", "creation_time", "failure_reason", "deleted_upstream", "flow_definition_id"
    )
    return {row[0]: StoredLoop(*row[1:]) for row in rows}


def _insert_loops_orm(flow_definition_id: int, rows: list[LoopRow], now: datetime) -> list[tuple[int, str]]:
    """Insert new loops (no history row: see the module docstring); returns (id, status) per new loop."""
    if not rows:
        return []
    loops = HumanLoop.objects.bulk_create(
        [
            HumanLoop(
                flow_definition_id=flow_definition_id, name=r.name, arn=r.arn, status=r.status,
                creation_time=r.creation_time, failure_reason=r.failure_reason, output_s3_uri=r.output_s3_uri,
                first_seen_at=now, last_seen_at=now, status_changed_at=now,
            )
            for r in rows
        ]
    )
    return [(loop.pk, loop.status) for loop in loops]


def insert_new_and_fetch_stored(
    flow_definition_id: int, page: ListedPage, now: datetime
) -> tuple[list[tuple[int, str]], dict[str, StoredLoop]]:
    """Insert the loops of `page` not stored yet, and return
    `(inserted (id, status) pairs, the rows stored before, by ARN)`.

    On PostgreSQL this is one statement: every part of a WITH query sees the same
    snapshot, so `stored` holds the rows that existed before the INSERT.
    """
    if not _postgres():
        stored = _fetch_stored_orm(page.arns)
        return _insert_loops_orm(flow_definition_id, [r for r in page.rows() if r.arn not in stored], now), stored
    with _array_cursor() as cursor:
        cursor.execute(
            f"""
            WITH input AS (
                SELECT * FROM unnest(%(names)b::text[], %(arns)b::text[], %(statuses)b::text[],
                                     %(created)b::timestamptz[], %(reasons)b::text[])
                    AS t(name, arn, status, created, reason)
            ), stored AS (
                -- One probe of the unique ARN index per listed loop.
                SELECT l.arn, l.id, l.status, l.creation_time, l.failure_reason, l.deleted_upstream,
                       l.flow_definition_id
                FROM {LOOPS} l WHERE l.arn = ANY(%(arns)b)
            ), new AS (
                -- No ON CONFLICT: its extra probe costs ~5%% of a first sync, and only a
                -- concurrent writer of the same ARN could conflict, which the claim rules
                -- out (it would fail this page's transaction, and the next run converges).
                INSERT INTO {LOOPS} (flow_definition_id, name, arn, status, creation_time, failure_code,
                    failure_reason, output_s3_uri, first_seen_at, last_seen_at, status_changed_at, deleted_upstream)
                SELECT %(fd)s, i.name, i.arn, i.status, i.created, '', i.reason, {OUTPUT_URI_SQL},
                       %(now)s, %(now)s, %(now)s, false
                FROM input i WHERE i.arn NOT IN (SELECT arn FROM stored)
                RETURNING id, arn, status
            )
            SELECT true, arn, id, status, NULL::timestamptz, NULL::text, NULL::boolean, NULL::bigint FROM new
            UNION ALL
            SELECT false, * FROM stored
            """,
            {
                "fd": flow_definition_id,
                "now": now,
                "prefix": page.output_prefix,
                "names": page.names,
                "arns": page.arns,
                "statuses": page.statuses,
                "created": page.created,
                "reasons": page.reasons,
            },
            prepare=True,  # parsed and planned once per connection, not per page
        )
        inserted, stored = [], {}
        for is_new, arn, *rest in cursor.fetchall():
            if is_new:
                inserted.append((rest[0], rest[1]))
            else:
                stored[arn] = StoredLoop(*rest)
        return inserted, stored


def update_loops(flow_definition_id: int, changes: list[LoopChange], now: datetime) -> None:
    """Write the changed loops (un-deleting them: they are listed) and one history row per transition.

    status_changed_at moves only for loops whose status changed.
    """
    if not changes:
        return
    history = [
        HumanLoopStatusChange(loop_id=c.id, from_status=c.from_status, to_status=c.row.status, observed_at=now)
        for c in changes
        if c.from_status is not None
    ]
    if _postgres():
        with _array_cursor() as cursor:
            cursor.execute(
                f"""
                UPDATE {LOOPS} AS l SET
                    flow_definition_id = %(fd)s, status = t.status, creation_time = t.created,
                    failure_reason = t.reason, output_s3_uri = t.uri, last_seen_at = %(now)s,
                    deleted_upstream = false, deleted_upstream_at = NULL,
                    status_changed_at = CASE WHEN t.moved THEN %(now)s ELSE l.status_changed_at END
                FROM unnest(%(ids)b::bigint[], %(statuses)b::text[], %(created)b::timestamptz[], %(reasons)b::text[],
                            %(uris)b::text[], %(moved)b::boolean[]) AS t(id, status, created, reason, uri, moved)
                WHERE l.id = t.id
                """,
                {
                    "fd": flow_definition_id,
                    "now": now,
                    "ids": [c.id for c in changes],
                    "statuses": [c.row.status for c in changes],
                    "created": [c.row.creation_time for c in changes],
                    "reasons": [c.row.failure_reason for c in changes],
                    "uris": [c.row.output_s3_uri for c in changes],
                    "moved": [c.from_status is not None for c in changes],
                },
                prepare=True,  # parsed and planned once per connection, not per page
            )
    else:
        fields = ["flow_definition", "status", "creation_time", "failure_reason", "output_s3_uri", "last_seen_at",
                  "deleted_upstream", "deleted_upstream_at"]
        for moved in (True, False):
            loops = [
                HumanLoop(
                    id=c.id, flow_definition_id=flow_definition_id, status=c.row.status, creation_time=c.row.creation_time,
                    failure_reason=c.row.failure_reason, output_s3_uri=c.row.output_s3_uri, last_seen_at=now,
                    deleted_upstream=False, deleted_upstream_at=None, status_changed_at=now,
                )
                for c in changes
                if (c.from_status is not None) == moved
            ]
            if loops:
                HumanLoop.objects.bulk_update(loops, fields + ["status_changed_at"] if moved else fields)
    if history:
        HumanLoopStatusChange.objects.bulk_create(history)
