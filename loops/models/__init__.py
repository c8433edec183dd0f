"""The loops app's models, one module per area; Django finds them through this package.

    mirror   FlowDefinition, HumanLoop, HumanLoopStatusChange and the A2I status enums
    sync     SyncRun, WorkerHeartbeat
    actions  LoopActionBatch, LoopAction (the audit log)
    alerts   AlertRule, AlertState, AlertTransition, AlertChannel, AlertDelivery, MetricRollup
    tokens   ApiToken
    answers  HumanAnswer (one row per reviewer's answer), ReviewerStats (the reviewers page)
    events   ReceivedEvent (A2I's EventBridge events as received)
"""

from loops.models.actions import LoopAction, LoopActionBatch
from loops.models.alerts import AlertChannel, AlertDelivery, AlertRule, AlertState, AlertTransition, MetricRollup
from loops.models.answers import HumanAnswer, ReviewerStats
from loops.models.events import ReceivedEvent
from loops.models.mirror import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    AnswersState,
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
    "AnswersState",
    "FailureCode",
    "FlowDefinition",
    "FlowDefinitionStatus",
    "HumanAnswer",
    "HumanLoop",
    "HumanLoopStatus",
    "HumanLoopStatusChange",
    "LoopAction",
    "LoopActionBatch",
    "MetricRollup",
    "ReviewerStats",
    "ReceivedEvent",
    "SyncRun",
    "WorkerHeartbeat",
]
