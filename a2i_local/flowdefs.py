"""Flow definitions: the part of the store behind the SageMaker JSON 1.1 calls.

Flow definitions are few, so an in-memory cache (by id, ARN and name) is kept beside the
table; every loop operation resolves its flow definition there without SQL.
Status: Initializing until ``active_at_ms`` (options.flow_definition_activation_delay
after create), then Active. Delete is immediate (our choice: AWS shows a transient
Deleting), removes the flow definition's loops too, and frees the name.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable

from . import errors
from .config import Options
from .records import FLOW_DEFINITION_COLUMNS, FlowDefinitionRecord
from .schema import FAR, LIST_FLOW_DEFINITIONS_SQL

DEFAULT_LIFETIME_S = 864_000  # 10 days: AWS's documented default for private workforces


class FlowDefinitions:
    """The flow_definitions table and its cache; a part of the Store.

    Shares the store's connection and lock (deleting a flow definition deletes its loops
    in the same transaction) and its clock, which tests move.
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock, options: Options,
                 now_ms: Callable[[], int]):
        self._db = db
        self._lock = lock
        self.options = options
        self._now_ms = now_ms
        self.reload()

    def reload(self) -> None:
        """Rebuild the cache from the table (after a reset or a bulk seed)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {FLOW_DEFINITION_COLUMNS} FROM flow_definitions").fetchall()
            records = [FlowDefinitionRecord(*row) for row in rows]
            self._by_id = {r.id: r for r in records}
            self._by_arn = {r.arn: r for r in records}
            self._by_name = {r.name: r for r in records}

    def by_id(self, flow_definition_id: int) -> FlowDefinitionRecord:
        """The flow definition of an existing loop (loops never outlive theirs)."""
        return self._by_id[flow_definition_id]

    def by_arn(self, arn: str) -> FlowDefinitionRecord | None:
        return self._by_arn.get(arn)

    def count(self) -> int:
        return len(self._by_id)

    def arn_for(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.options.region}:{self.options.account_id}:flow-definition/{name}"

    def create(self, name: str, spec: dict) -> FlowDefinitionRecord:
        """Insert an Initializing flow definition. ``spec`` holds the validated request fields.

        Raises ResourceInUse when the name exists.
        """
        config = spec.get("HumanLoopConfig") or {}
        lifetime = int(config.get("TaskAvailabilityLifetimeInSeconds") or DEFAULT_LIFETIME_S)
        output_path = spec["OutputConfig"]["S3OutputPath"].rstrip("/")
        with self._lock:
            if name in self._by_name:
                raise errors.ResourceInUse(f"Flow definition with name '{name}' already exists.")
            now = self._now_ms()
            active_at = now + int(self.options.flow_definition_activation_delay * 1000)
            arn = self.arn_for(name)
            spec_json = json.dumps(spec, separators=(",", ":"))
            cur = self._db.execute(
                "INSERT INTO flow_definitions (name, arn, creation_ms, active_at_ms, lifetime_s, output_path, spec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (name, arn, now, active_at, lifetime, output_path, spec_json))
            record = FlowDefinitionRecord(cur.lastrowid, name, arn, now, active_at, lifetime, output_path, spec_json)
            self._by_id[record.id] = record
            self._by_arn[arn] = record
            self._by_name[name] = record
            return record

    def describe(self, name: str) -> tuple[FlowDefinitionRecord, str]:
        """Return ``(record, status)``; ResourceNotFound when absent."""
        with self._lock:
            record = self._by_name.get(name)
            if record is None:
                raise errors.ResourceNotFound(f"Could not find flow definition '{self.arn_for(name)}'.")
            return record, record.status(self._now_ms())

    def list_page(self, *, after_ms: int | None, before_ms: int | None, sort_order: str, max_results: int,
                  position: tuple[int, int] | None) -> tuple[list[tuple[FlowDefinitionRecord, str]], tuple | None]:
        """One keyset page; returns ``(records_with_status, next_position)``."""
        with self._lock:
            now = self._now_ms()
            if position is None:
                position = (FAR, FAR) if sort_order == "Descending" else (-FAR, -FAR)
            rows = self._db.execute(LIST_FLOW_DEFINITIONS_SQL[sort_order], (
                -FAR if after_ms is None else after_ms, FAR if before_ms is None else before_ms,
                position[0], position[1], max_results + 1)).fetchall()
        records = [FlowDefinitionRecord(*row) for row in rows]
        next_position = None
        if len(records) > max_results:
            records = records[:max_results]
            next_position = (records[-1].creation_ms, records[-1].id)
        return [(r, r.status(now)) for r in records], next_position

    def delete(self, name: str) -> None:
        """Delete an Active flow definition and all its loops (the name becomes free).

        ResourceNotFound when absent; ResourceInUse while Initializing (AWS: only Active
        flow definitions can be deleted).
        """
        with self._lock:
            record = self._by_name.get(name)
            if record is None:
                raise errors.ResourceNotFound(f"Could not find flow definition '{self.arn_for(name)}'.")
            if record.status(self._now_ms()) != "Active":
                raise errors.ResourceInUse(
                    f"Flow definition '{name}' is Initializing; only an Active flow definition can be deleted.")
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM loops WHERE flow_definition_id = ?", (record.id,))
            self._db.execute("DELETE FROM flow_definitions WHERE id = ?", (record.id,))
            self._db.execute("COMMIT")
            del self._by_id[record.id]
            del self._by_arn[record.arn]
            del self._by_name[record.name]

    def active_arns(self) -> list[str]:
        with self._lock:
            now = self._now_ms()
            return [r.arn for r in self._by_id.values() if r.status(now) == "Active"]
