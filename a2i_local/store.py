"""State and rules of A2I Local: human loops (and, through FlowDefinitions, flow definitions) in SQLite.

One connection guarded by one lock: every statement is short (an index lookup or a
range scan of at most 101 rows), so serialising them is simpler than per-thread
connections and still far below the latency budget. Times are integer milliseconds.

Loop lifecycle (docs/a2i-local.md, behaviour notes §3):
    InProgress -> Completed           complete_loop (control API, workforce)
    InProgress -> Failed              fail_loop, or expiry (FailureCode Expired)
    InProgress -> Stopping -> Stopped stop_human_loop, then options.stop_delay_seconds
The ``due_ms`` column holds the next timed transition of a loop (expiry for InProgress,
Stopped for Stopping) so that ``process_due`` finds due loops with an index range.
Listeners get a Describe-shaped dict after commit whenever a loop reaches Completed,
Failed or Stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime

from . import errors, output
from .config import Options
from .flowdefs import FlowDefinitions
from .records import LOOP_COLUMNS, FlowDefinitionRecord, LoopRecord
from .schema import FAR, LIST_LOOPS_SQL, connect, list_params
from .seed import seed_connection
from .timestamps import ms_to_datetime
from .validation import FAILURE_CODES

log = logging.getLogger(__name__)

TERMINAL = ("Completed", "Failed", "Stopped")
EXPIRED_REASON = "The human loop expired: TaskAvailabilityLifetimeInSeconds passed before it was completed."


class Store:
    def __init__(self, options: Options):
        self.options = options
        self._lock = threading.RLock()
        self._db = connect(options.db)
        self._listeners: list[Callable[[dict], None]] = []
        self._clock_offset_ms = 0
        self._next_due_ms = 0  # earliest due_ms of any loop; process_due skips SQL before it
        self._completing: set[int] = set()  # loops whose output.json is being written
        self.token_key = self._load_token_key()
        self.flow_definitions = FlowDefinitions(self._db, self._lock, options, self.now_ms)

    # -- infrastructure --------------------------------------------------------------------

    def _load_token_key(self) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'token_key'").fetchone()
            if row is None:
                value = os.urandom(16).hex()
                self._db.execute("INSERT INTO meta (key, value) VALUES ('token_key', ?)", (value,))
                return bytes.fromhex(value)
            return bytes.fromhex(row[0])

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self._clock_offset_ms

    def now(self) -> datetime:
        """The store's clock (aware UTC); tests move it with advance_clock."""
        return ms_to_datetime(self.now_ms())

    def advance_clock(self, seconds: float) -> None:
        """Move the store's clock forward (control API /_local/clock), then apply due transitions."""
        with self._lock:
            self._clock_offset_ms += int(seconds * 1000)
        self.process_due()

    def subscribe(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(loop_dict)`` after commit when a loop reaches Completed, Failed or Stopped."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[dict], None]) -> None:
        self._listeners.remove(callback)

    def _notify(self, loops: list[dict]) -> None:
        for loop in loops:
            for callback in self._listeners:
                try:
                    callback(loop)
                except Exception:  # a listener must never break a state change
                    log.exception("store listener %r failed", callback)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def reset(self) -> None:
        """Drop every loop and flow definition and reset the clock (POST /_local/reset)."""
        with self._lock:
            self._db.execute("DELETE FROM loops")
            self._db.execute("DELETE FROM flow_definitions")
            self._clock_offset_ms = 0
            self._next_due_ms = 0
            self.flow_definitions.reload()

    def count_loops(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM loops").fetchone()[0]

    def explain_list(self, sort_order: str = "Descending") -> list[str]:
        """The query plan of the ListHumanLoops statement (tests assert it uses loops_list)."""
        with self._lock:
            fd = FlowDefinitionRecord(1, "x", "arn", 0, 0, 1, "s3://b", "{}")
            rows = self._db.execute("EXPLAIN QUERY PLAN " + LIST_LOOPS_SQL[sort_order],
                                    list_params(fd, sort_order, None, None, (10**12, 5), 101))
            return [detail for _id, _parent, _unused, detail in rows]

    # -- loop dicts --------------------------------------------------------------------------

    def loop_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.options.region}:{self.options.account_id}:human-loop/{name}"

    def _loop_dict(self, loop: LoopRecord) -> dict:
        """DescribeHumanLoop's keys (the contract for listeners and the workforce)."""
        fd = self.flow_definitions.by_id(loop.flow_definition_id)
        return {
            "HumanLoopName": loop.name,
            "HumanLoopArn": self.loop_arn(loop.name),
            "HumanLoopStatus": loop.status,
            "CreationTime": ms_to_datetime(loop.creation_ms),
            "CreationTimeMs": loop.creation_ms,
            "FailureReason": loop.failure_reason,
            "FailureCode": loop.failure_code,
            "FlowDefinitionArn": fd.arn,
            "OutputS3Uri": output.output_uri(fd.output_path, fd.name, loop.name, loop.creation_ms),
        }

    def _find(self, name: str) -> LoopRecord | None:
        row = self._db.execute(f"SELECT {LOOP_COLUMNS} FROM loops WHERE name = ?", (name,)).fetchone()
        return None if row is None else LoopRecord(*row)

    def _get(self, name: str) -> LoopRecord:
        loop = self._find(name)
        if loop is None:
            raise errors.ResourceNotFoundException(f"Human loop '{name}' does not exist.")
        return loop

    def _loops_where(self, condition: str, params: tuple) -> list[LoopRecord]:
        rows = self._db.execute(f"SELECT {LOOP_COLUMNS} FROM loops WHERE {condition}", params).fetchall()
        return [LoopRecord(*row) for row in rows]

    # -- runtime operations -----------------------------------------------------------------

    def start_human_loop(self, name: str, flow_definition_arn: str, input_content: str,
                         content_classifiers: list[str] | None = None) -> dict:
        """StartHumanLoop: insert an InProgress loop and return its dict.

        Same name + same flow definition + identical input returns the existing loop
        (idempotent retry); any other reuse of an existing name raises ConflictException.
        Raises ValidationException for an unknown or non-Active flow definition and
        ServiceQuotaExceededException when options.max_active_loops is reached.
        """
        classifiers = json.dumps(sorted(content_classifiers)) if content_classifiers is not None else None
        with self._lock:
            now = self.now_ms()
            fd = self.flow_definitions.by_arn(flow_definition_arn)
            if fd is None:
                raise errors.ValidationException(f"Flow definition '{flow_definition_arn}' does not exist.")
            if fd.active_at_ms > now:
                raise errors.ValidationException(
                    f"Flow definition '{flow_definition_arn}' is not Active (status: Initializing).")
            existing = self._find(name)
            if existing is not None:
                stored_input, stored_classifiers = self._db.execute(
                    "SELECT input_content, classifiers FROM loops WHERE id = ?", (existing.id,)).fetchone()
                if (existing.flow_definition_id == fd.id and stored_input == input_content
                        and stored_classifiers == classifiers):
                    return self._loop_dict(existing)
                raise errors.ConflictException(
                    f"A human loop named '{name}' already exists with different input data.")
            limit = self.options.max_active_loops
            if limit is not None:
                active = self._db.execute(
                    "SELECT count(*) FROM loops WHERE status IN ('InProgress', 'Stopping')").fetchone()[0]
                if active >= limit:
                    raise errors.ServiceQuotaExceededException(
                        f"You have reached the maximum number of active human loops ({limit}).")
            due = now + fd.lifetime_s * 1000
            cur = self._db.execute(
                "INSERT INTO loops (name, flow_definition_id, status, creation_ms, due_ms, input_content, classifiers) "
                "VALUES (?, ?, 'InProgress', ?, ?, ?, ?)",
                (name, fd.id, now, due, input_content, classifiers))
            self._next_due_ms = min(self._next_due_ms, due)
            return self._loop_dict(LoopRecord(cur.lastrowid, name, fd.id, "InProgress", now, None, None))

    def describe_human_loop(self, name: str) -> dict:
        with self._lock:
            return self._loop_dict(self._get(name))

    def list_human_loops(self, flow_definition_arn: str, *, after_ms: int | None, before_ms: int | None,
                         sort_order: str, max_results: int, position: tuple[int, int] | None):
        """One page of ListHumanLoops from the loops_list index.

        Returns ``(summaries_json, next_position)``: the HumanLoopSummaries already
        serialised (one JSON object text per loop) and the keyset position of the last
        row, or None on the last page. Unknown flow definition -> ResourceNotFoundException.
        """
        with self._lock:
            fd = self.flow_definitions.by_arn(flow_definition_arn)
            if fd is None:
                raise errors.ResourceNotFoundException(f"Flow definition '{flow_definition_arn}' does not exist.")
            rows = self._db.execute(LIST_LOOPS_SQL[sort_order], list_params(
                fd, sort_order, after_ms, before_ms, position, max_results + 1)).fetchall()
        if len(rows) > max_results:
            last_id, last_creation_ms, _ = rows[max_results - 1]
            return [summary for _id, _creation_ms, summary in rows[:max_results]], (last_creation_ms, last_id)
        return [summary for _id, _creation_ms, summary in rows], None

    def stop_human_loop(self, name: str) -> dict:
        """InProgress -> Stopping (-> Stopped after options.stop_delay_seconds; at once when 0).

        Any other status raises ValidationException: AWS leaves this unsettled, it is our
        choice (docs/a2i-local.md, behaviour notes §1.3).
        """
        stopped = None
        with self._lock:
            loop = self._get(name)
            if loop.status != "InProgress":
                raise errors.ValidationException(
                    f"Human loop '{name}' is {loop.status}; only a human loop that is InProgress can be stopped.")
            delay_ms = int(self.options.stop_delay_seconds * 1000)
            if delay_ms <= 0:
                self._db.execute("UPDATE loops SET status = 'Stopped', due_ms = NULL WHERE id = ?", (loop.id,))
                stopped = self._loop_dict(dataclasses.replace(loop, status="Stopped"))
            else:
                due = self.now_ms() + delay_ms
                self._db.execute("UPDATE loops SET status = 'Stopping', due_ms = ? WHERE id = ?", (due, loop.id))
                self._next_due_ms = min(self._next_due_ms, due)
            result = self._loop_dict(self._get(name))
        if stopped:
            self._notify([stopped])
        return result

    def delete_human_loop(self, name: str) -> None:
        """Remove a Completed, Failed or Stopped loop; its name becomes free. Else ValidationException."""
        with self._lock:
            loop = self._get(name)
            if loop.status not in TERMINAL:
                raise errors.ValidationException(
                    f"Human loop '{name}' is {loop.status}; only a human loop that is Completed, Failed or Stopped "
                    "can be deleted. Stop it first.")
            self._db.execute("DELETE FROM loops WHERE id = ?", (loop.id,))

    # -- transitions made by the control API, the workforce and the clock ---------------------

    def complete_loop(self, name: str, answer_content: dict | None = None, worker_id: str | None = None,
                      time_spent_seconds: float | None = None, *,
                      answers: list[output.WorkerAnswer] | None = None) -> dict:
        """Write output.json to the loop's OutputS3Uri, then mark it Completed.

        One answer (``answer_content`` by ``worker_id``), or ``answers``, one per worker.

        Raises ResourceNotFoundException, InvalidLoopState (not InProgress), or
        OutputWriteError (S3 failed: the loop stays InProgress). The S3 write happens
        outside the lock so a slow S3 never blocks other requests; the final UPDATE is
        conditional on the loop still being InProgress (a stop or expiry may win the race).
        """
        with self._lock:
            record = self._get(name)
            if record.status != "InProgress":
                raise errors.InvalidLoopState(
                    f"Human loop '{name}' is {record.status}; only an InProgress loop can be completed.")
            # Claim the loop so a concurrent complete cannot overwrite this output.json.
            if record.id in self._completing:
                raise errors.InvalidLoopState(f"Human loop '{name}' is already being completed.")
            self._completing.add(record.id)
            input_content = self._db.execute(
                "SELECT input_content FROM loops WHERE id = ?", (record.id,)).fetchone()[0]
            loop = self._loop_dict(record)
            now = self.now_ms()
        try:
            if answers is None:
                answers = [output.WorkerAnswer(answer_content or {}, worker_id, time_spent_seconds)]
            document = output.answer_document(
                loop, input_content=input_content, answers=answers, now_ms=now, region=self.options.region)
            output.write_output(self.options, loop["OutputS3Uri"], document)
            with self._lock:
                cur = self._db.execute(
                    "UPDATE loops SET status = 'Completed', due_ms = NULL WHERE id = ? AND status = 'InProgress'",
                    (record.id,))
                if cur.rowcount == 0:
                    raise errors.InvalidLoopState(f"Human loop '{name}' changed state while its output was written.")
        finally:
            with self._lock:
                self._completing.discard(record.id)
        loop["HumanLoopStatus"] = "Completed"
        self._notify([loop])
        return loop

    def fail_loop(self, name: str, failure_code: str, failure_reason: str) -> dict:
        """InProgress -> Failed with the given FailureCode (ValidationError|Expired|InternalError)."""
        if failure_code not in FAILURE_CODES:
            raise errors.ValidationException(
                f"FailureCode '{failure_code}' is not one of {', '.join(FAILURE_CODES)}.")
        if not isinstance(failure_reason, str) or not 1 <= len(failure_reason) <= 1024:
            raise errors.ValidationException("FailureReason must be a string of 1 to 1024 characters.")
        with self._lock:
            record = self._get(name)
            if record.status != "InProgress":
                raise errors.InvalidLoopState(
                    f"Human loop '{name}' is {record.status}; only an InProgress loop can be failed.")
            self._db.execute(
                "UPDATE loops SET status = 'Failed', failure_code = ?, failure_reason = ?, due_ms = NULL WHERE id = ?",
                (failure_code, failure_reason, record.id))
            loop = self._loop_dict(dataclasses.replace(
                record, status="Failed", failure_code=failure_code, failure_reason=failure_reason))
        self._notify([loop])
        return loop

    def process_due(self) -> int:
        """Apply due timed transitions: expiry (-> Failed/Expired) and Stopping -> Stopped.

        Called before every request and by the reaper thread. Cheap when nothing is due:
        an in-memory comparison, no SQL. A loop still Stopping when its lifetime passes
        simply becomes Stopped at its stop time (our choice; AWS documents nothing).
        Returns the number of loops changed.
        """
        if self.now_ms() < self._next_due_ms:
            return 0
        changed: list[dict] = []
        with self._lock:
            now = self.now_ms()
            while True:
                expired = self._loops_where("status = 'InProgress' AND due_ms <= ? LIMIT 500", (now,))
                stopping = self._loops_where("status = 'Stopping' AND due_ms <= ? LIMIT 500", (now,))
                if not expired and not stopping:
                    break
                self._db.execute("BEGIN")
                for record in expired:
                    self._db.execute(
                        "UPDATE loops SET status = 'Failed', failure_code = 'Expired', failure_reason = ?, "
                        "due_ms = NULL WHERE id = ?", (EXPIRED_REASON, record.id))
                    changed.append(self._loop_dict(dataclasses.replace(
                        record, status="Failed", failure_code="Expired", failure_reason=EXPIRED_REASON)))
                for record in stopping:
                    self._db.execute("UPDATE loops SET status = 'Stopped', due_ms = NULL WHERE id = ?", (record.id,))
                    changed.append(self._loop_dict(dataclasses.replace(record, status="Stopped")))
                self._db.execute("COMMIT")
            self._next_due_ms = self._earliest_due()
        self._notify(changed)
        return len(changed)

    def _earliest_due(self) -> int:
        values = [self._db.execute("SELECT min(due_ms) FROM loops WHERE status = ?", (status,)).fetchone()[0]
                  for status in ("InProgress", "Stopping")]
        values = [v for v in values if v is not None]
        return min(values) if values else FAR

    def in_progress_loops(self, limit: int) -> list[dict]:
        """The oldest InProgress loops (dicts with HumanLoopName, FlowDefinitionArn, CreationTime, ...)."""
        with self._lock:
            records = self._loops_where("status = 'InProgress' ORDER BY creation_ms LIMIT ?", (limit,))
            return [self._loop_dict(record) for record in records]

    def insert_loops(self, flow_definition_arn: str, loops: list[tuple[str, int]], status: str = "Completed") -> None:
        """Insert loops created at chosen times: (name, creation time in ms since the epoch) pairs.

        For tests of the time filters (a loop exactly on a CreationTimeAfter/Before bound);
        the API only creates loops "now". Terminal `status` only (no expiry to schedule).
        Raises ValidationException for an unknown flow definition or a non-terminal status,
        sqlite3.IntegrityError for a name already taken.
        """
        if status not in TERMINAL:
            raise errors.ValidationException(f"insert_loops creates terminal loops only, not {status!r}.")
        with self._lock:
            fd = self.flow_definitions.by_arn(flow_definition_arn)
            if fd is None:
                raise errors.ValidationException(f"Flow definition '{flow_definition_arn}' does not exist.")
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO loops (name, flow_definition_id, status, creation_ms, input_content) "
                    "VALUES (?, ?, ?, ?, '{}')",
                    [(name, fd.id, status, creation_ms) for name, creation_ms in loops])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def seed(self, flow_definitions: int, loops: int, random_seed: int = 0) -> list[str]:
        """Bulk-insert flow definitions and loops (see seed.py); returns the flow-definition ARNs."""
        with self._lock:
            arns = seed_connection(self._db, region=self.options.region, account_id=self.options.account_id,
                                   flow_definitions=flow_definitions, loops=loops, random_seed=random_seed,
                                   now_ms=self.now_ms())
            self.flow_definitions.reload()
            self._next_due_ms = self._earliest_due()
        return arns
