from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from calls.dashboard import dashboard_context
from calls.exports import csv_response
from calls.masking import mask_phone
from calls.models import AgentProfile, Call, CallEvent
from calls.replay import call_events_replay
from calls.selectors import CSV_COLUMNS, call_export_rows, transcript_turns

# Columns the changelist reads; the transcript and JSON documents stay in the database.
CHANGELIST_COLUMNS = (
    "id",
    "call_id",
    "started_at",
    "agent_id",
    "agent_name",
    "direction",
    "from_number",
    "status",
    "duration_ms",
    "ended_at",
    "user_sentiment",
    "call_successful",
    "combined_cost",
)


class ReadOnlyAdminMixin:
    """Webhook data is evidence: operators read it, nobody edits it by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def pretty_json(value: Any) -> SafeString:
    if value in (None, "", {}, []):
        return format_html("<span>{}</span>", "—")
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def pretty_body(raw_body: str) -> SafeString:
    try:
        document = json.loads(raw_body)
    except ValueError:
        return format_html("<pre>{}</pre>", raw_body)
    return pretty_json(document)


class ReplayActionsMixin:
    """Replay through calls/replay.py: a dry run shows what would change, with a button
    to do it; a real run reports how much changed."""

    def replay_event_ids(self, queryset: QuerySet[Any]) -> list[int]:
        raise NotImplementedError

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Replaying writes calls; the read-only console leaves that to those who may
        # change calls (superusers, or staff granted calls.change_call).
        return request.user.has_perm("calls.change_call")

    @admin.action(
        description="Replay events (dry run: show what would change)", permissions=["replay"]
    )
    def replay_dry_run(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        result = call_events_replay(event_ids=self.replay_event_ids(queryset), dry_run=True)
        admin_site = self.admin_site  # type: ignore[attr-defined]
        context = {
            **admin_site.each_context(request),
            "title": "Replay: what would change",
            "result": result,
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "opts": self.model._meta,  # type: ignore[attr-defined]
        }
        return TemplateResponse(request, "admin/calls/replay_dry_run.html", context)

    @admin.action(description="Replay events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        result = call_events_replay(event_ids=self.replay_event_ids(queryset), dry_run=False)
        self.message_user(  # type: ignore[attr-defined]
            request,
            f"Replayed {result.replayed} events ({result.skipped} skipped); "
            f"{len(result.changes)} values changed.",
            messages.SUCCESS,
        )


class CallEventInline(ReadOnlyAdminMixin, admin.TabularInline[CallEvent, Call]):
    model = CallEvent
    extra = 0
    can_delete = False
    fields = ("event", "source", "first_received_at", "delivery_count", "source_ip", "body")
    readonly_fields = fields

    @admin.display(description="Raw body")
    def body(self, event: CallEvent) -> SafeString:
        return format_html(
            "<details><summary>{} bytes</summary>{}</details>",
            len(event.raw_body),
            pretty_body(event.raw_body),
        )


@admin.register(Call)
class CallAdmin(ReplayActionsMixin, ReadOnlyAdminMixin, admin.ModelAdmin[Call]):
    list_display = [
        "call_id",
        "started_at",
        "agent",
        "direction",
        "caller",
        "status",
        "duration",
        "user_sentiment",
        "call_successful",
        "cost",
    ]
    list_filter = [
        "status",
        "direction",
        "call_type",
        "user_sentiment",
        "call_successful",
        "disconnection_reason",
        "agent_id",
    ]
    search_fields = ["call_id", "from_number", "to_number", "agent_id", "agent_name"]
    date_hierarchy = "started_at"
    # A full COUNT(*) on every page is the slow part of a changelist over many calls.
    show_full_result_count = False
    inlines = [CallEventInline]
    actions = ["replay_dry_run", "replay", "export_csv"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "call_id",
                    "status",
                    "agent",
                    "call_type",
                    "direction",
                    "from_number",
                    "to_number",
                    "started_at",
                    "ended_at",
                    "duration",
                    "disconnection_reason",
                    "cost",
                    "last_event",
                    "last_event_at",
                ]
            },
        ),
        (
            "Analysis",
            {
                "fields": [
                    "call_summary",
                    "user_sentiment",
                    "call_successful",
                    "in_voicemail",
                    "custom_analysis",
                ]
            },
        ),
        ("Recording and logs", {"fields": ["recording_player", "public_log"]}),
        ("Transcript", {"fields": ["turns"]}),
        (
            "Data as received",
            {
                "classes": ["collapse"],
                "fields": ["metadata_json", "variables_json", "latency_json", "call_object_json"],
            },
        ),
    ]
    readonly_fields = [
        "agent",
        "duration",
        "cost",
        "custom_analysis",
        "recording_player",
        "public_log",
        "turns",
        "metadata_json",
        "variables_json",
        "latency_json",
        "call_object_json",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Call]:
        calls = super().get_queryset(request)
        match = request.resolver_match
        if match is not None and match.url_name == "calls_call_changelist":
            return calls.only(*CHANGELIST_COLUMNS)
        return calls

    def get_urls(self) -> list[URLPattern]:
        dashboard = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name="calls_call_dashboard",
        )
        return [dashboard, *super().get_urls()]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Calls dashboard",
            "opts": self.model._meta,
            **dashboard_context(),
        }
        return TemplateResponse(request, "admin/calls/call/dashboard.html", context)

    @admin.display(description="Agent", ordering="agent_name")
    def agent(self, call: Call) -> str:
        return call.agent_name or call.agent_id

    @admin.display(description="Caller", ordering="from_number")
    def caller(self, call: Call) -> str:
        return mask_phone(call.from_number)

    @admin.display(description="Duration", ordering="duration_ms")
    def duration(self, call: Call) -> str:
        length = call.duration
        if length is None:
            return "—"
        minutes, seconds = divmod(int(length.total_seconds()), 60)
        return f"{minutes}:{seconds:02d}"

    @admin.display(description="Cost (¢)", ordering="combined_cost")
    def cost(self, call: Call) -> str:
        return "—" if call.combined_cost is None else f"{call.combined_cost:.2f}"

    @admin.display(description="Custom analysis")
    def custom_analysis(self, call: Call) -> SafeString:
        return pretty_json(call.custom_analysis_data)

    @admin.display(description="Recording")
    def recording_player(self, call: Call) -> SafeString:
        if not call.recording_url:
            return format_html("{}", "—")
        return format_html(
            '<audio controls preload="none" src="{}"></audio> <a href="{}">download</a>',
            call.recording_url,
            call.recording_url,
        )

    @admin.display(description="Retell public log")
    def public_log(self, call: Call) -> SafeString:
        if not call.public_log_url:
            return format_html("{}", "—")
        return format_html('<a href="{}" rel="noreferrer">{}</a>', call.public_log_url, "open log")

    @admin.display(description="Transcript")
    def turns(self, call: Call) -> SafeString:
        turns = transcript_turns(call=call)
        if not turns:
            return format_html("<pre>{}</pre>", call.transcript or "—")
        return format_html_join(
            "",
            '<p style="margin: 0 0 .4em"><strong>{}:</strong> {}</p>',
            ((turn["role"].replace("_", " ").capitalize(), turn["content"]) for turn in turns),
        )

    @admin.display(description="Metadata")
    def metadata_json(self, call: Call) -> SafeString:
        return pretty_json(call.metadata)

    @admin.display(description="Dynamic variables")
    def variables_json(self, call: Call) -> SafeString:
        return pretty_json(
            {"given": call.dynamic_variables, "collected": call.collected_dynamic_variables}
        )

    @admin.display(description="Latency")
    def latency_json(self, call: Call) -> SafeString:
        return pretty_json(call.latency)

    @admin.display(description="Call object")
    def call_object_json(self, call: Call) -> SafeString:
        return pretty_json(call.call_object)

    def replay_event_ids(self, queryset: QuerySet[Call]) -> list[int]:
        return list(CallEvent.objects.filter(call__in=queryset).values_list("pk", flat=True))

    @admin.action(description="Export selected calls as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Call]) -> Any:
        rows = call_export_rows(calls=queryset)
        return csv_response(request=request, filename="calls.csv", header=CSV_COLUMNS, rows=rows)


@admin.register(CallEvent)
class CallEventAdmin(ReplayActionsMixin, ReadOnlyAdminMixin, admin.ModelAdmin[CallEvent]):
    list_display = ["event", "call", "source", "first_received_at", "delivery_count"]
    list_filter = ["event", "source"]
    list_select_related = ["call"]
    search_fields = ["call__call_id", "body_sha256"]
    date_hierarchy = "first_received_at"
    show_full_result_count = False
    actions = ["replay_dry_run", "replay"]
    readonly_fields = ["body"]
    exclude = ["raw_body"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CallEvent]:
        # The list shows the call's id only; its transcript and JSON need not come along, nor
        # each event's raw body (10-20 KB). The change page loads the body when it shows it.
        heavy = ("call__transcript", "call__transcript_object", "call__transcript_with_tool_calls")
        return super().get_queryset(request).defer("raw_body", *heavy)

    @admin.display(description="Raw body")
    def body(self, event: CallEvent) -> SafeString:
        return pretty_body(event.raw_body)

    def replay_event_ids(self, queryset: QuerySet[CallEvent]) -> list[int]:
        return list(queryset.values_list("pk", flat=True))


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
