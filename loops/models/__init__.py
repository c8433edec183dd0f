"""The loops app's models, one module per area; Django finds them through this package.

    mirror   FlowDefinition, HumanLoop, HumanLoopStatusChange and the A2I status enums
    sync     SyncRun, WorkerHeartbeat
    actions  LoopActionBatch, LoopAction (the audit log)
    events   ReceivedEvent (A2I's EventBridge events as received)
"""

from loops.models.actions import LoopAction, LoopActionBatch
from loops.models.events import ReceivedEvent
from loops.models.mirror import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    FailureCode,
    FlowDefinition,
    FlowDefinitionStatus,
    HumanLoop,
    HumanLoopStatus,
    HumanLoopStatusChange,
)
from loops.models.sync import SyncRun, WorkerHeartbeat

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "FailureCode",
    "FlowDefinition",
    "FlowDefinitionStatus",
    "HumanLoop",
    "HumanLoopStatus",
    "HumanLoopStatusChange",
    "LoopAction",
    "LoopActionBatch",
    "ReceivedEvent",
    "SyncRun",
    "WorkerHeartbeat",
]
