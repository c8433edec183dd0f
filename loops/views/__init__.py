"""The dashboard's pages (issue 4): thin views over loops.services."""

from loops.views.flow_definitions import flow_definition_detail, flow_definition_list
from loops.views.loop import loop_detail, loop_refresh
from loops.views.listing import loop_list
from loops.views.home import overview
from loops.views.sync import sync_runs

__all__ = [
    "flow_definition_detail",
    "flow_definition_list",
    "loop_detail",
    "loop_list",
    "loop_refresh",
    "overview",
    "sync_runs",
]
