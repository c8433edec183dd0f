"""Every URL of the dashboard: the pages (namespace "loops"), the stop/delete actions ("actions"),
the machine-readable endpoints (/metrics, /health/, /badges/) and the endpoint A2I's
EventBridge events are POSTed to ("events")."""

from django.urls import include, path, re_path

from loops.views import actions, alerts, events, flow_definitions, loop, loop_list, monitoring, overview, reviewers, sync, tokens

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
    path("loops/<int:pk>/output.json", loop.loop_output_raw, name="loop_output"),
    path("flow-definitions/", flow_definitions.flow_definition_list, name="flow_definitions"),
    path("flow-definitions/discover/", flow_definitions.discover_now, name="discover_flow_definitions"),
    path("flow-definitions/<int:pk>/", flow_definitions.flow_definition_detail, name="flow_definition"),
    path("sync/", sync.sync_runs, name="sync"),
    path("reviewers/", reviewers.reviewer_list, name="reviewers"),
    # Worker ids come from output.json: any characters, slashes included.
    path("reviewers/<path:worker_id>/", reviewers.reviewer_detail, name="reviewer"),
    path("alerts/", alerts.alerts_page, name="alerts"),
    path("alerts/evaluate/", alerts.evaluate_now, name="alerts_evaluate"),
    path("alerts/rules/new/", alerts.rule_create, name="alert_rule_create"),
    path("alerts/rules/<int:pk>/", alerts.rule_edit, name="alert_rule_edit"),
    path("alerts/rules/<int:pk>/mute/", alerts.rule_mute, name="alert_rule_mute"),
    path("alerts/rules/<int:pk>/delete/", alerts.rule_delete, name="alert_rule_delete"),
    path("alerts/channels/new/", alerts.channel_create, name="alert_channel_create"),
    path("alerts/channels/<int:pk>/delete/", alerts.channel_delete, name="alert_channel_delete"),
    path("alerts/channels/<int:pk>/test/", alerts.channel_test, name="alert_channel_test"),
    path("tokens/", tokens.token_list, name="tokens"),
    path("tokens/<int:pk>/revoke/", tokens.token_revoke, name="token_revoke"),
]

monitoring_patterns = [
    path("metrics", monitoring.metrics_view, name="metrics"),
    path("health/", monitoring.health_view, name="health"),
    re_path(r"^badges/(?P<name>[A-Za-z0-9-]{1,63})\.(?P<extension>svg|json)$", monitoring.badge_view, name="badge"),
]

event_patterns = [
    path("eventbridge/", events.eventbridge, name="eventbridge"),
]

urlpatterns = [
    path("actions/", include((action_patterns, "actions"))),
    path("events/", include((event_patterns, "events"))),
    path("", include((page_patterns, "loops"))),
    path("", include((monitoring_patterns, "monitoring"))),
]
