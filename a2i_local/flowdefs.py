"""Flow definitions: the part of the store behind the SageMaker JSON 1.1 calls.

Flow definitions are few, so an in-memory cache (by id and by ARN) is kept beside the
table; every loop operation resolves its flow definition there without SQL.
Status: Initializing until ``active_at_ms`` (options.flow_definition_activation_delay
after create), then Active. Delete is immediate (our choice: AWS shows a transient
Deleting), removes the flow definition's loops too, and frees the name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import errors

DEFAULT_LIFETIME_S = 864_000  # 10 days: AWS's documented default for private workforces


@dataclass(frozen=True)
class FlowDefinitionRecord:
    id: int
    name: str
    arn: str
    creation_ms: int
    active_at_ms: int
    lifetime_s: int
    output_path: str
    spec: str

    def status(self, now_ms: int) -> str:
        return "Active" if now_ms >= self.active_at_ms else "Initializing"


_FD_COLUMNS = "id, name, arn, creation_ms, active_at_ms, lifetime_s, output_path, spec"
_FAR = 1 << 62

_LIST_SQL = {
    "Descending": (
        f"SELECT {_FD_COLUMNS} FROM flow_definitions WHERE creation_ms >= ? AND creation_ms < ? "
        "AND (creation_ms, id) < (?, ?) ORDER BY creation_ms DESC, id DESC LIMIT ?"
    ),
    "Ascending": (
        f"SELECT {_FD_COLUMNS} FROM flow_definitions WHERE creation_ms >= ? AND creation_ms < ? "
        "AND (creation_ms, id) > (?, ?) ORDER BY creation_ms ASC, id ASC LIMIT ?"
    ),
}


class FlowDefinitionMixin:
    """Mixed into Store; uses its ``_lock``, ``_db``, ``options`` and ``now_ms``."""

    def _load_flow_definitions(self) -> None:
        rows = self._db.execute(f"SELECT {_FD_COLUMNS} FROM flow_definitions").fetchall()
        records = [FlowDefinitionRecord(*row) for row in rows]
        self._fd_by_id = {r.id: r for r in records}
        self._fd_by_arn = {r.arn: r for r in records}
        self._fd_by_name = {r.name: r for r in records}

    def flow_definition_arn(self, name: str) -> str:
        return f"arn:aws:sagemaker:{self.options.region}:{self.options.account_id}:flow-definition/{name}"

    def create_flow_definition(self, name: str, spec: dict) -> FlowDefinitionRecord:
        """Insert an Initializing flow definition. ``spec`` holds the validated request fields.

        Raises ResourceInUse when the name exists.
        """
        config = spec.get("HumanLoopConfig") or {}
        lifetime = int(config.get("TaskAvailabilityLifetimeInSeconds") or DEFAULT_LIFETIME_S)
        output_path = spec["OutputConfig"]["S3OutputPath"].rstrip("/")
        with self._lock:
            if name in self._fd_by_name:
                raise errors.ResourceInUse(f"Flow definition with name '{name}' already exists.")
            now = self.now_ms()
            active_at = now + int(self.options.flow_definition_activation_delay * 1000)
            arn = self.flow_definition_arn(name)
            spec_json = json.dumps(spec, separators=(",", ":"))
            cur = self._db.execute(
                "INSERT INTO flow_definitions (name, arn, creation_ms, active_at_ms, lifetime_s, output_path, spec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (name, arn, now, active_at, lifetime, output_path, spec_json))
            record = FlowDefinitionRecord(cur.lastrowid, name, arn, now, active_at, lifetime, output_path, spec_json)
            self._fd_by_id[record.id] = record
            self._fd_by_arn[arn] = record
            self._fd_by_name[name] = record
            return record

    def describe_flow_definition(self, name: str) -> tuple[FlowDefinitionRecord, str]:
        """Return ``(record, status)``; ResourceNotFound when absent."""
        with self._lock:
            record = self._fd_by_name.get(name)
            if record is None:
                raise errors.ResourceNotFound(f"Could not find flow definition '{self.flow_definition_arn(name)}'.")
            return record, record.status(self.now_ms())

    def list_flow_definitions(self, *, after_ms, before_ms, sort_order: str, max_results: int, position):
        """One keyset page; returns ``(records_with_status, next_position)``."""
        with self._lock:
            now = self.now_ms()
            if position is None:
                position = (_FAR, _FAR) if sort_order == "Descending" else (-_FAR, -_FAR)
            rows = self._db.execute(_LIST_SQL[sort_order], (
                -_FAR if after_ms is None else after_ms, _FAR if before_ms is None else before_ms,
                position[0], position[1], max_results + 1)).fetchall()
        records = [FlowDefinitionRecord(*row) for row in rows]
        next_position = None
        if len(records) > max_results:
            records = records[:max_results]
            next_position = (records[-1].creation_ms, records[-1].id)
        return [(r, r.status(now)) for r in records], next_position

    def delete_flow_definition(self, name: str) -> None:
        """Delete an Active flow definition and all its loops (the name becomes free).

        ResourceNotFound when absent; ResourceInUse while Initializing (AWS: only Active
        flow definitions can be deleted).
        """
        with self._lock:
            record = self._fd_by_name.get(name)
            if record is None:
                raise errors.ResourceNotFound(f"Could not find flow definition '{self.flow_definition_arn(name)}'.")
            if record.status(self.now_ms()) != "Active":
                raise errors.ResourceInUse(
                    f"Flow definition '{name}' is Initializing; only an Active flow definition can be deleted.")
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM loops WHERE flow_definition_id = ?", (record.id,))
            self._db.execute("DELETE FROM flow_definitions WHERE id = ?", (record.id,))
            self._db.execute("COMMIT")
            del self._fd_by_id[record.id]
            del self._fd_by_arn[record.arn]
            del self._fd_by_name[record.name]

    def active_flow_definition_arns(self) -> list[str]:
        with self._lock:
            now = self.now_ms()
            return [r.arn for r in self._fd_by_id.values() if r.status(now) == "Active"]
