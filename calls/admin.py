from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from calls.models import AgentProfile, Call, CallEvent


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


# --- Agent profiles (the call socket, calls/llm/) -------------------------------------------
# Unlike webhook data these are configuration: operators edit them. A call picks its profile
# when the socket learns its agent_id, so an edit applies from the next call on.
@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin[AgentProfile]):
    list_display = ["agent_id", "name", "responder", "model", "tools_enabled", "is_active"]
    list_filter = ["responder", "is_active", "tools_enabled"]
    search_fields = ["agent_id", "name"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["agent_id", "name", "is_active", "responder"]}),
        (
            "What the agent says",
            {"fields": ["begin_message", "reminder_line", "fallback_line", "closing_line"]},
        ),
        (
            "Model",
            {
                "fields": [
                    "system_prompt",
                    "model",
                    "temperature",
                    "tools_enabled",
                    "transfer_number",
                    "base_url",
                    "api_key_env",
                ]
            },
        ),
        ("Scripted responder", {"fields": ["rules", "end_call_phrases"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
