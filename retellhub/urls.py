from django.contrib import admin
from django.urls import include, path

from calls import live, views
from retellhub.metrics import metrics_view

urlpatterns = [
    path("webhook", views.WebhookView.as_view(), name="webhook"),
    path("ping", views.ping, name="ping"),
    path("health", views.health, name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("calls.api")),
    path("live/", live.live_calls_page, name="live-calls"),
    path("live/<str:call_id>/", live.live_call_page, name="live-call"),
]
