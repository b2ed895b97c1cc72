"""What we send: the Slack message and the forwarded event, built once at enqueue time.

Bodies are built when the event is stored and kept on the delivery, so every retry sends
the same bytes (and a forwarded event keeps its ``webhook-id``), whatever happens to the
call later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from calls.masking import mask_phone
from calls.models import Call, CallEvent, Sentiment
from calls.payloads import call_fields
from notifications.models import SlackTrigger


def to_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))


def slack_triggers(*, event: str, fields: Mapping[str, Any]) -> list[str]:
    """The Slack triggers one event sets off, from that event's own payload.

    Reading the event rather than the merged call keeps this order-free: a late
    ``call_ended`` still reports its own disconnection, and never re-reports analysis.
    """
    found: list[str] = []
    if event == "call_ended":
        found.append(SlackTrigger.CALL_ENDED)
        if str(fields.get("disconnection_reason", "")).startswith("error"):
            found.append(SlackTrigger.ERROR_DISCONNECTION)
    if event == "call_analyzed":
        found.append(SlackTrigger.CALL_ANALYZED)
        if fields.get("user_sentiment") == Sentiment.NEGATIVE:
            found.append(SlackTrigger.NEGATIVE_SENTIMENT)
        if fields.get("call_successful") is False:
            found.append(SlackTrigger.UNSUCCESSFUL_CALL)
    return found


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_duration(duration: timedelta | None) -> str:
    if duration is None:
        return "—"
    minutes, seconds = divmod(int(duration.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_outcome(call: Call) -> str:
    if call.call_successful is None:
        return "—"
    return "Successful" if call.call_successful else "Unsuccessful"


def _number(value: str, *, show: bool) -> str:
    if not value:
        return "—"
    return value if show else mask_phone(value)


def slack_message(
    *, call: Call, triggers: list[str], admin_url: str, show_numbers: bool
) -> dict[str, Any]:
    """An incoming-webhook message: a plain ``text`` fallback plus Block Kit fields."""
    labels = ", ".join(SlackTrigger(trigger).label for trigger in triggers)
    who = call.agent_name or call.agent_id or "agent"
    title = f"{labels}: {call.call_id} ({who})"
    fields = {
        "Duration": format_duration(call.duration),
        "Sentiment": call.user_sentiment or "—",
        "Outcome": format_outcome(call),
        "Disconnection": call.disconnection_reason or "—",
        "From": _number(call.from_number, show=show_numbers),
        "To": _number(call.to_number, show=show_numbers),
    }
    summary = call.call_summary or "No summary yet."
    return {
        "text": f"{title}\n{summary}",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*{slack_escape(labels)}* · <{admin_url}|{slack_escape(call.call_id)}>"
                    f" ({slack_escape(who)})\n{slack_escape(summary)}",
                },
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{slack_escape(value)}"}
                    for name, value in fields.items()
                ],
            },
        ],
    }


def forward_document(*, event: CallEvent) -> dict[str, Any]:
    """The normalised event: Standard Webhooks' ``type``/``timestamp``/``data`` envelope.

    ``data.call`` holds our column names and types (ISO times, not epoch milliseconds),
    so receivers need not know Retell's two payload shapes.
    """
    return {
        "type": event.event,
        "timestamp": event.first_received_at,
        "data": {
            "event_id": event.pk,
            "call_id": event.call.call_id,
            "call": call_fields(event.payload),
        },
    }
