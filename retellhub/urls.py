from django.contrib import admin
from django.urls import include, path

from calls import views

urlpatterns = [
    path("webhook", views.webhook, name="webhook"),
    path("ping", views.ping, name="ping"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("api/", include("calls.api")),
]
