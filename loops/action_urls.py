"""URLs of the stop/delete actions in the dashboard (issue 5)."""

app_name = "actions"

urlpatterns: list = []
