from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from calls.admin import ReadOnlyAdminMixin
from notifications.actions import delivery_retry
from notifications.models import Delivery, DeliveryAttempt, Destination, Recording


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin[Destination]):
    list_display = ["name", "kind", "url", "events", "enabled", "from_environment"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "url"]
    fields = ["name", "kind", "url", "events", "signing_secret", "show_phone_numbers", "enabled"]

    @admin.display(boolean=True, description="from environment")
    def from_environment(self, obj: Destination) -> bool:
        return obj.from_environment

    def has_change_permission(self, request: HttpRequest, obj: Destination | None = None) -> bool:
        # Environment destinations change with the environment (and restart), not here.
        if obj is not None and obj.from_environment:
            return False
        return super().has_change_permission(request, obj)


class DeliveryAttemptInline(ReadOnlyAdminMixin, admin.TabularInline[DeliveryAttempt, Delivery]):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "status_code", "latency_ms", "succeeded", "error")
    readonly_fields = fields


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Delivery]):
    list_display = [
        "id",
        "kind",
        "destination",
        "call",
        "event_type",
        "state",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "short_error",
        "created_at",
    ]
    list_filter = ["state", "kind", "destination"]
    list_select_related = ["destination", "call", "event"]
    search_fields = ["call__call_id", "message_id"]
    date_hierarchy = "created_at"
    actions = ["retry_now"]
    inlines = [DeliveryAttemptInline]
    readonly_fields = [
        "kind",
        "destination",
        "call",
        "event",
        "message_id",
        "triggers",
        "source_url",
        "state",
        "attempts",
        "max_attempts",
        "next_attempt_at",
        "locked_until",
        "last_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "finished_at",
        "body",
    ]

    @admin.display(description="event", ordering="event__event")
    def event_type(self, obj: Delivery) -> str:
        return obj.event.event if obj.event else "—"

    @admin.display(description="last error")
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Editing is closed to everyone; retrying is for whoever may change deliveries.
        return request.user.has_perm("notifications.change_delivery")

    @admin.action(description="Retry now (pending or dead)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = delivery_retry(delivery_ids=queryset.values_list("pk", flat=True))
        self.message_user(
            request,
            f"{count} delivery(ies) queued again; succeeded or in-flight ones were skipped.",
            messages.SUCCESS,
        )


@admin.register(Recording)
class RecordingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Recording]):
    list_display = ["call", "captured_at", "size_bytes", "content_type", "download"]
    list_select_related = ["call"]
    search_fields = ["call__call_id", "sha256"]
    readonly_fields = [
        "call",
        "source_url",
        "size_bytes",
        "sha256",
        "content_type",
        "captured_at",
        "download",
    ]
    exclude = ["file"]

    @admin.display(description="file")
    def download(self, obj: Recording) -> str:
        url = reverse("admin:notifications_recording_download", args=[obj.pk])
        return format_html('<a href="{}">Download</a>', url)

    def get_urls(self) -> list[URLPattern]:
        # admin_view: staff only, like every admin page; the view adds the model permission.
        download = path(
            "<int:pk>/download/",
            self.admin_site.admin_view(self.download_view),
            name="notifications_recording_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, pk: int) -> FileResponse:
        recording = Recording.objects.select_related("call").filter(pk=pk).first()
        if recording is None or not self.has_view_permission(request, recording):
            raise Http404("No such recording.")
        handle = recording.file.storage.open(recording.file.name, "rb")
        filename = (
            f"{recording.call.call_id}{recording.file.name[recording.file.name.rfind('.') :]}"
        )
        return FileResponse(
            handle,
            as_attachment=True,
            filename=filename,
            content_type=recording.content_type or "application/octet-stream",
        )
