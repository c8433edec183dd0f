"""The rows of A2I Local's tables as named records.

Each record lists its table's columns in SELECT order, so ``Record(*row)`` builds it and
the column list is derived from the fields (never written twice). Records are frozen: a
state change is a new record (``dataclasses.replace``) after the UPDATE.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class FlowDefinitionRecord:
    """A row of flow_definitions."""

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


@dataclass(frozen=True, slots=True)
class LoopRecord:
    """The columns of a loops row that describe it (its input is read only when needed)."""

    id: int
    name: str
    flow_definition_id: int
    status: str
    creation_ms: int
    failure_code: str | None
    failure_reason: str | None


FLOW_DEFINITION_COLUMNS = ", ".join(field.name for field in fields(FlowDefinitionRecord))
LOOP_COLUMNS = ", ".join(field.name for field in fields(LoopRecord))
