"""URLs of the stop/delete actions in the dashboard (issue 5), mounted at /actions/."""

from django.urls import path

from . import action_views

app_name = "actions"

urlpatterns = [
    path("confirm/", action_views.confirm, name="confirm"),
    path("execute/", action_views.execute, name="execute"),
    path("batches/<int:batch_id>/", action_views.batch_detail, name="batch"),
    path("audit/", action_views.audit, name="audit"),
]
