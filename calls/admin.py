from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from calls.models import Call, CallEvent


class ReadOnlyAdminMixin:
    """Webhook data is evidence: operators read it, nobody edits it by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CallEventInline(ReadOnlyAdminMixin, admin.TabularInline[CallEvent, Call]):
    model = CallEvent
    extra = 0
    can_delete = False
    fields = ("event", "source", "first_received_at", "delivery_count", "source_ip")
    readonly_fields = fields


@admin.register(Call)
class CallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[Call]):
    list_display = ["call_id", "started_at", "agent_id", "direction", "status", "last_event"]
    list_filter = ["status", "direction", "user_sentiment"]
    search_fields = ["call_id", "agent_id"]
    date_hierarchy = "started_at"
    inlines = [CallEventInline]


@admin.register(CallEvent)
class CallEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin[CallEvent]):
    list_display = ["event", "call", "source", "first_received_at", "delivery_count"]
    list_filter = ["event", "source"]
    list_select_related = ["call"]
    search_fields = ["call__call_id", "body_sha256"]
