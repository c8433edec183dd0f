"""The SQLite schema of A2I Local and the statements that must stay fast.

Times are integer milliseconds since the epoch. Every index carries a comment naming the
query it serves.
"""

from __future__ import annotations

import sqlite3

from .records import FLOW_DEFINITION_COLUMNS, FlowDefinitionRecord

FAR = 1 << 62  # sentinel bound: lets one prepared statement serve filtered and unfiltered lists

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flow_definitions (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    arn TEXT NOT NULL UNIQUE,
    creation_ms INTEGER NOT NULL,
    active_at_ms INTEGER NOT NULL,   -- Initializing before this time, Active after
    lifetime_s INTEGER NOT NULL,     -- HumanLoopConfig.TaskAvailabilityLifetimeInSeconds
    output_path TEXT NOT NULL,       -- S3OutputPath without a trailing slash
    spec TEXT NOT NULL               -- the Describe fields given at create, as JSON
);
-- Serves ListFlowDefinitions (keyset range in either order).
CREATE INDEX IF NOT EXISTS flow_definitions_list ON flow_definitions (creation_ms, id);
CREATE TABLE IF NOT EXISTS loops (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    flow_definition_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    creation_ms INTEGER NOT NULL,
    due_ms INTEGER,                  -- next timed transition (expiry / Stopped), else NULL
    failure_code TEXT,
    failure_reason TEXT,
    input_content TEXT NOT NULL,
    classifiers TEXT                 -- JSON list or NULL
);
"""
# Created after bulk seeding too (seed.py drops and recreates them for speed).
INDEX_STATEMENTS = (
    # Names are unique among existing loops; DeleteHumanLoop removes the row, freeing the name.
    "CREATE UNIQUE INDEX IF NOT EXISTS loops_name ON loops (name)",
    # Serves ListHumanLoops: a keyset range scan per flow definition, either sort order.
    "CREATE INDEX IF NOT EXISTS loops_list ON loops (flow_definition_id, creation_ms, id)",
    # Serves process_due (expiry and Stopping -> Stopped) and the reaper's min(due_ms).
    "CREATE INDEX IF NOT EXISTS loops_due ON loops (status, due_ms)",
    # Serves in_progress_loops (the workforce takes the oldest InProgress loops first) and the
    # active-loop count of max_active_loops.
    "CREATE INDEX IF NOT EXISTS loops_status_creation ON loops (status, creation_ms)",
)
INDEX_NAMES = ("loops_name", "loops_list", "loops_due", "loops_status_creation")

# Each HumanLoopSummary is serialised by SQLite itself (json_object escapes, strftime
# formats the millisecond timestamp exactly like timestamps.format_iso_ms): building 100
# dicts and formatting 100 datetimes in Python was most of a list request's time.
# FailureReason is left out when absent, as AWS does.
_SUMMARY_JSON = (
    "CASE WHEN failure_reason IS NULL THEN json_object("
    "'HumanLoopName', name, 'HumanLoopStatus', status, "
    "'CreationTime', strftime('%Y-%m-%dT%H:%M:%fZ', creation_ms / 1000.0, 'unixepoch'), "
    "'FlowDefinitionArn', :arn) "
    "ELSE json_object("
    "'HumanLoopName', name, 'HumanLoopStatus', status, "
    "'CreationTime', strftime('%Y-%m-%dT%H:%M:%fZ', creation_ms / 1000.0, 'unixepoch'), "
    "'FailureReason', failure_reason, 'FlowDefinitionArn', :arn) END"
)

# The keyset position is folded into a plain range on creation_ms (which SQLite uses as
# the index bound) plus a filter for ties on creation_ms; a row-value comparison alone
# would not bound the index scan and deep pages would scan from the top.
LIST_LOOPS_SQL = {
    "Descending": (
        f"SELECT id, creation_ms, {_SUMMARY_JSON} FROM loops "
        "WHERE flow_definition_id = :fd AND creation_ms >= :low AND creation_ms <= :high "
        "AND (creation_ms < :pc OR id < :pid) ORDER BY creation_ms DESC, id DESC LIMIT :limit"
    ),
    "Ascending": (
        f"SELECT id, creation_ms, {_SUMMARY_JSON} FROM loops "
        "WHERE flow_definition_id = :fd AND creation_ms >= :low AND creation_ms <= :high "
        "AND (creation_ms > :pc OR id > :pid) ORDER BY creation_ms ASC, id ASC LIMIT :limit"
    ),
}

# ListFlowDefinitions: flow definitions are few, so a row-value keyset comparison is enough.
LIST_FLOW_DEFINITIONS_SQL = {
    "Descending": (
        f"SELECT {FLOW_DEFINITION_COLUMNS} FROM flow_definitions WHERE creation_ms >= ? AND creation_ms < ? "
        "AND (creation_ms, id) < (?, ?) ORDER BY creation_ms DESC, id DESC LIMIT ?"
    ),
    "Ascending": (
        f"SELECT {FLOW_DEFINITION_COLUMNS} FROM flow_definitions WHERE creation_ms >= ? AND creation_ms < ? "
        "AND (creation_ms, id) > (?, ?) ORDER BY creation_ms ASC, id ASC LIMIT ?"
    ),
}


def list_params(fd: FlowDefinitionRecord, sort_order: str, after_ms: int | None, before_ms: int | None,
                position: tuple[int, int] | None, limit: int) -> dict:
    """Named parameters for LIST_LOOPS_SQL. After is inclusive, Before exclusive; the keyset
    position narrows the creation_ms range on its side."""
    low = -FAR if after_ms is None else after_ms
    high = FAR if before_ms is None else before_ms - 1
    if sort_order == "Descending":
        pc, pid = position or (FAR, FAR)
        high = min(high, pc)
    else:
        pc, pid = position or (-FAR, -FAR)
        low = max(low, pc)
    return {"fd": fd.id, "arn": fd.arn, "low": low, "high": high, "pc": pc, "pid": pid, "limit": limit}


def connect(path: str | None) -> sqlite3.Connection:
    """Open (and create) the database; in memory when ``path`` is None."""
    conn = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None,
                           cached_statements=256)
    if path:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Reads through mmap skip a copy into SQLite's page cache, which keeps list
        # pages of a large file fast.
        conn.execute("PRAGMA mmap_size=1073741824")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB
    conn.executescript(SCHEMA)
    for statement in INDEX_STATEMENTS:
        conn.execute(statement)
    return conn
