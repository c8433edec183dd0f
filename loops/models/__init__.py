"""The loops app's models, one module per area; Django finds them through this package.

    mirror   FlowDefinition, HumanLoop, HumanLoopStatusChange and the A2I status enums
    sync     SyncRun, WorkerHeartbeat
    actions  LoopActionBatch, LoopAction (the audit log)
    alerts   AlertRule, AlertState, AlertTransition, AlertChannel, AlertDelivery, MetricRollup
    tokens   ApiToken
"""

from loops.models.actions import LoopAction, LoopActionBatch
from loops.models.alerts import AlertChannel, AlertDelivery, AlertRule, AlertState, AlertTransition, MetricRollup
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
from loops.models.tokens import ApiToken

__all__ = [
    "ACTIVE_STATUSES",
    "AlertChannel",
    "AlertDelivery",
    "AlertRule",
    "AlertState",
    "AlertTransition",
    "ApiToken",
    "TERMINAL_STATUSES",
    "FailureCode",
    "FlowDefinition",
    "FlowDefinitionStatus",
    "HumanLoop",
    "HumanLoopStatus",
    "HumanLoopStatusChange",
    "LoopAction",
    "LoopActionBatch",
    "MetricRollup",
    "SyncRun",
    "WorkerHeartbeat",
]
