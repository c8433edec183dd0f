from django.urls import path

from . import views

app_name = "loops"

urlpatterns = [
    path("", views.overview, name="overview"),
]
