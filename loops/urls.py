"""The dashboard's pages. Every view requires login (see each view's decorator)."""

from django.urls import path

from . import views

app_name = "loops"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("loops/", views.loop_list, name="loop_list"),
    path("loops/<int:pk>/", views.loop_detail, name="loop"),
    path("loops/<int:pk>/refresh/", views.loop_refresh, name="loop_refresh"),
    path("flow-definitions/", views.flow_definition_list, name="flow_definitions"),
    path("flow-definitions/<int:pk>/", views.flow_definition_detail, name="flow_definition"),
    path("sync/", views.sync_runs, name="sync"),
]
