"""Output shapes of the REST API (read-only; the API never writes)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from calls.models import Call, CallEvent, CallStatus, Direction, Sentiment
from calls.selectors import LIST_COLUMNS, transcript_turns


def cents_field() -> serializers.DecimalField:
    """Cost in cents as a JSON number, not DRF's default decimal-as-string."""
    return serializers.DecimalField(
        max_digits=14, decimal_places=4, coerce_to_string=False, allow_null=True, read_only=True
    )


def blank_or_choice(choices: list[tuple[str, str]]) -> serializers.ChoiceField:
    """A read-only choice that may be "" (not known yet).

    DRF drops ``allow_blank`` from read-only model fields, so the schema would otherwise
    promise one of the choices where a call without, say, analysis answers "".
    """
    return serializers.ChoiceField(choices=choices, allow_blank=True, read_only=True)


class CallListSerializer(serializers.ModelSerializer[Call]):
    combined_cost = cents_field()
    event_count = serializers.IntegerField(read_only=True)
    direction = blank_or_choice(Direction.choices)
    status = blank_or_choice(CallStatus.choices)
    user_sentiment = blank_or_choice(Sentiment.choices)

    class Meta:
        model = Call
        # Exactly the columns call_list() loads (without the pk), so a new field here
        # cannot quietly cost one query per row.
        fields = [*(name for name in LIST_COLUMNS if name != "id"), "event_count"]
        read_only_fields = fields


class CallEventSerializer(serializers.ModelSerializer[CallEvent]):
    call_id = serializers.CharField(source="retell_call_id", read_only=True)

    class Meta:
        model = CallEvent
        fields = [
            "id",
            "call_id",
            "event",
            "source",
            "payload_key",
            "first_received_at",
            "last_received_at",
            "delivery_count",
        ]
        read_only_fields = fields


class CallEventRawSerializer(CallEventSerializer):
    """Everything as received. Staff only: bodies carry personal data."""

    # Parsed from raw_body (CallEvent.payload); declared as the JSON it is.
    payload = serializers.JSONField(read_only=True, help_text="The call object as received.")

    class Meta(CallEventSerializer.Meta):
        fields = [
            *CallEventSerializer.Meta.fields,
            "body_sha256",
            "source_ip",
            "key_fingerprint",
            "payload",
            "raw_body",
        ]
        read_only_fields = fields


class NestedEventSerializer(serializers.ModelSerializer[CallEvent]):
    class Meta:
        model = CallEvent
        fields = [f for f in CallEventSerializer.Meta.fields if f != "call_id"]
        read_only_fields = fields


class AnalysisSerializer(serializers.Serializer[Call]):
    call_summary = serializers.CharField()
    user_sentiment = serializers.CharField()
    call_successful = serializers.BooleanField(allow_null=True)
    in_voicemail = serializers.BooleanField(allow_null=True)
    custom_analysis_data = serializers.JSONField(allow_null=True)


class CallDetailSerializer(serializers.ModelSerializer[Call]):
    combined_cost = cents_field()
    direction = blank_or_choice(Direction.choices)
    status = blank_or_choice(CallStatus.choices)
    user_sentiment = blank_or_choice(Sentiment.choices)
    analysis = serializers.SerializerMethodField()
    events = NestedEventSerializer(many=True, read_only=True)

    class Meta:
        model = Call
        fields = [
            *[f for f in CallListSerializer.Meta.fields if f != "event_count"],
            "agent_version",
            "recording_url",
            "public_log_url",
            "metadata",
            "dynamic_variables",
            "collected_dynamic_variables",
            "latency",
            "analysis",
            "events",
        ]
        read_only_fields = fields

    @extend_schema_field(AnalysisSerializer(allow_null=True))
    def get_analysis(self, call: Call) -> dict[str, Any] | None:
        has_analysis = call.call_summary or call.user_sentiment or call.call_successful is not None
        return AnalysisSerializer(call).data if has_analysis else None


class TurnSerializer(serializers.Serializer[dict[str, str]]):
    role = serializers.CharField()
    content = serializers.CharField()


class TranscriptSerializer(serializers.Serializer[Call]):
    call_id = serializers.CharField()
    text = serializers.CharField(source="transcript")
    turns = serializers.SerializerMethodField()

    @extend_schema_field(TurnSerializer(many=True))
    def get_turns(self, call: Call) -> list[dict[str, str]]:
        return transcript_turns(call=call)


class StatsQuerySerializer(serializers.Serializer[dict[str, Any]]):
    """``GET /api/stats/`` parameters. Without a range: the last 30 days."""

    started_after = serializers.DateTimeField(required=False)
    started_before = serializers.DateTimeField(required=False)
    agent = serializers.CharField(required=False, max_length=128)


class DurationStatsSerializer(serializers.Serializer[dict[str, Any]]):
    avg = serializers.FloatField(allow_null=True)
    p50 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)


class CostStatsSerializer(serializers.Serializer[dict[str, Any]]):
    total = serializers.FloatField(allow_null=True)
    avg = serializers.FloatField(allow_null=True)


class DayStatsSerializer(serializers.Serializer[dict[str, Any]]):
    date = serializers.DateField()
    calls = serializers.IntegerField()
    sentiment = serializers.DictField(child=serializers.IntegerField())


class StatsSerializer(serializers.Serializer[dict[str, Any]]):
    started_after = serializers.DateTimeField()
    started_before = serializers.DateTimeField()
    agent = serializers.CharField(allow_null=True)
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    by_disconnection_reason = serializers.DictField(child=serializers.IntegerField())
    by_sentiment = serializers.DictField(child=serializers.IntegerField())
    successful = serializers.IntegerField()
    rated = serializers.IntegerField(help_text="Calls whose analysis says whether they succeeded.")
    success_rate = serializers.FloatField(allow_null=True, help_text="successful / rated.")
    duration_ms = DurationStatsSerializer(help_text="Over calls with a duration above zero.")
    cost_cents = CostStatsSerializer()
    per_day = DayStatsSerializer(many=True)
