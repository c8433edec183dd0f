"""Bulk seeding: flow definitions and loops written straight into SQLite (no HTTP).

Used by ``python -m a2i_local seed`` and by the test handle's ``.seed()``. The loops
indexes are dropped during the insert and rebuilt after it: building an index over sorted
data once is much faster than maintaining it row by row. Deterministic for a given random
seed and database state.

``write_seed_outputs`` then gives the most recent Completed loops their output.json in S3
(as many answers as their flow definition's TaskCount, from the simulated workforce), so
a dashboard reading the reviewers' answers has some to read. One PUT takes a local S3
about 5 ms, so only a few hundred loops get one.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from concurrent.futures import ThreadPoolExecutor

from . import output, workforce
from .config import Options
from .schema import INDEX_NAMES, INDEX_STATEMENTS

DAY_MS = 86_400_000
SEED_LIFETIME_S = 864_000  # 10 days
OUTPUT_PATH = "s3://a2i-local-output/seed"

# (status, failure code, weight) of loops older than YOUNG_MS: most are Completed, as on a
# healthy account. Younger loops are InProgress with probability YOUNG_IN_PROGRESS.
YOUNG_MS = 2 * DAY_MS
YOUNG_IN_PROGRESS = 0.6
STATUS_MIX = (
    ("Completed", None, 800),
    ("Failed", "Expired", 40),
    ("Failed", "ValidationError", 15),
    ("Failed", "InternalError", 15),
    ("Stopped", None, 50),
)
FAILURE_REASONS = {
    "Expired": "The human loop expired: TaskAvailabilityLifetimeInSeconds passed before it was completed.",
    "ValidationError": "The worker response did not match the task template's output schema.",
    "InternalError": "An internal error occurred while processing the human loop.",
}
LABELS = ("cat", "dog", "invoice", "receipt", "contract", "id-card", "other")


def _flow_definition_spec(name: str, account_id: str, region: str, task_count: int = 1) -> dict:
    prefix = f"arn:aws:sagemaker:{region}:{account_id}"
    return {
        "HumanLoopConfig": {
            "WorkteamArn": f"{prefix}:workteam/private-crowd/a2i-local",
            "HumanTaskUiArn": f"{prefix}:human-task-ui/{name}-ui",
            "TaskTitle": f"Review {name}",
            "TaskDescription": "Check the model's prediction and correct it if needed.",
            "TaskCount": task_count,
            "TaskAvailabilityLifetimeInSeconds": SEED_LIFETIME_S,
            "TaskTimeLimitInSeconds": 3600,
        },
        "OutputConfig": {"S3OutputPath": OUTPUT_PATH},
        "RoleArn": f"arn:aws:iam::{account_id}:role/a2i-local-execution",
    }


def seed_connection(conn: sqlite3.Connection, *, region: str, account_id: str, flow_definitions: int,
                    loops: int, random_seed: int, now_ms: int, task_counts: list[int] | None = None) -> list[str]:
    """Insert (or reuse) ``flow_definitions`` Active flow definitions named ``seed-flow-N`` and
    ``loops`` loops spread evenly over them, created over the last 30 days.

    ``task_counts``: TaskCount of each new flow definition, in order (cycled; default 1).

    Returns the flow-definition ARNs. Side effect: rebuilds the loops indexes.
    Raises ValueError for non-positive counts.
    """
    if flow_definitions < 1 or loops < 0:
        raise ValueError("flow_definitions must be >= 1 and loops >= 0")
    rng = random.Random(random_seed)
    fd_ids, arns = [], []
    conn.execute("BEGIN")
    try:
        for i in range(flow_definitions):
            name = f"seed-flow-{i + 1}"
            arn = f"arn:aws:sagemaker:{region}:{account_id}:flow-definition/{name}"
            row = conn.execute("SELECT id FROM flow_definitions WHERE name = ?", (name,)).fetchone()
            if row is None:
                created = now_ms - 31 * DAY_MS + i * 1000
                task_count = task_counts[i % len(task_counts)] if task_counts else 1
                spec = json.dumps(_flow_definition_spec(name, account_id, region, task_count), separators=(",", ":"))
                row = (conn.execute(
                    "INSERT INTO flow_definitions (name, arn, creation_ms, active_at_ms, lifetime_s, output_path, spec)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, arn, created, created, SEED_LIFETIME_S, OUTPUT_PATH, spec)).lastrowid,)
            fd_ids.append(row[0])
            arns.append(arn)
        start = (conn.execute("SELECT max(id) FROM loops").fetchone()[0] or 0) + 1
        for index in INDEX_NAMES:
            conn.execute(f"DROP INDEX IF EXISTS {index}")
        conn.executemany(
            "INSERT INTO loops (name, flow_definition_id, status, creation_ms, due_ms, failure_code, failure_reason,"
            " input_content, classifiers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _rows(rng, fd_ids, loops, start, random_seed, now_ms))
        for statement in INDEX_STATEMENTS:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return arns


def _rows(rng: random.Random, fd_ids: list[int], count: int, start: int, random_seed: int, now_ms: int):
    """Rows in creation order, as a real account accumulates them: ids grow with creation
    time, so one list page reads a few adjacent table pages instead of 100 scattered ones.
    Loops younger than two days are mostly still InProgress; older ones follow STATUS_MIX."""
    terminal = [(s, c) for s, c, w in STATUS_MIX for _ in range(w)]
    window = 30 * DAY_MS
    lifetime_ms = SEED_LIFETIME_S * 1000
    n_fd = len(fd_ids)
    rand, choice = rng.random, rng.choice
    offsets = sorted(int(rand() * window) for _ in range(count))
    for n in range(count):
        created = now_ms - window + offsets[n]
        if now_ms - created < YOUNG_MS and rand() < YOUNG_IN_PROGRESS:
            status, code, due = "InProgress", None, created + lifetime_ms
        else:
            (status, code), due = choice(terminal), None
        yield (
            f"s{random_seed}-loop-{start + n:07d}",
            fd_ids[int(rand() * n_fd)],
            status,
            created,
            due,
            code,
            FAILURE_REASONS[code] if code else None,
            f'{{"taskObject":"s3://a2i-local-input/item-{start + n}.jpg","prediction":"{LABELS[n % 7]}",'
            f'"confidence":{round(rand(), 3)}}}',
            None,
        )


# How long after its creation a seeded loop's last answer was submitted: the workforce's
# default review times (median 2 min, p90 15 min).
SEED_REVIEW_MEDIAN_S, SEED_REVIEW_P90_S = 120.0, 900.0


def write_seed_outputs(conn: sqlite3.Connection, options: Options, *, limit: int, now_ms: int,
                       disagreement_rate: float = 0.1, threads: int = 8) -> int:
    """Write output.json for the ``limit`` most recent Completed loops (to ``options.s3_endpoint``).

    Returns how many were written. Raises errors.OutputWriteError when S3 refuses.
    """
    rows = conn.execute(
        "SELECT l.name, l.creation_ms, l.input_content, f.arn, f.name, f.output_path, f.spec"
        " FROM loops l JOIN flow_definitions f ON f.id = l.flow_definition_id"
        " WHERE l.status = 'Completed' ORDER BY l.creation_ms DESC LIMIT ?", (limit,)).fetchall()

    def write(row) -> None:
        name, creation_ms, input_content, fd_arn, fd_name, output_path, spec = row
        seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
        u = random.Random(seed).random()
        review_ms = int(workforce.sample_review_seconds(u, SEED_REVIEW_MEDIAN_S, SEED_REVIEW_P90_S) * 1000)
        completed_ms = min(creation_ms + review_ms, now_ms)
        answers = workforce.make_answers(seed, task_count=workforce.task_count_of(spec), created_ms=creation_ms,
                                         completed_ms=completed_ms, disagreement_rate=disagreement_rate)
        loop = {"FlowDefinitionArn": fd_arn, "HumanLoopName": name, "CreationTimeMs": creation_ms}
        document = output.answer_document(loop, input_content=input_content, answers=answers, now_ms=completed_ms,
                                          region=options.region)
        output.write_output(options, output.output_uri(output_path, fd_name, name, creation_ms), document)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for _ in pool.map(write, rows):
            pass
    return len(rows)
