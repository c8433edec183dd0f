"""Every URL of the dashboard: the pages (namespace "loops") and the stop/delete actions ("actions")."""

from django.urls import include, path

from loops.views import actions, flow_definitions, loop, loop_list, overview, sync

action_patterns = [
    path("confirm/", actions.confirm, name="confirm"),
    path("execute/", actions.execute, name="execute"),
    path("batches/<int:batch_id>/", actions.batch_detail, name="batch"),
    path("audit/", actions.audit, name="audit"),
]

page_patterns = [
    path("", overview.overview, name="overview"),
    path("loops/", loop_list.loop_list, name="loop_list"),
    path("loops/<int:pk>/", loop.loop_detail, name="loop"),
    path("loops/<int:pk>/refresh/", loop.loop_refresh, name="loop_refresh"),
    path("flow-definitions/", flow_definitions.flow_definition_list, name="flow_definitions"),
    path("flow-definitions/discover/", flow_definitions.discover_now, name="discover_flow_definitions"),
    path("flow-definitions/<int:pk>/", flow_definitions.flow_definition_detail, name="flow_definition"),
    path("sync/", sync.sync_runs, name="sync"),
]

urlpatterns = [
    path("actions/", include((action_patterns, "actions"))),
    path("", include((page_patterns, "loops"))),
]
