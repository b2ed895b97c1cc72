"""Query-string filters for calls and events (django-filter), shared by the API, the CSV
export and the benchmarks through ``calls/selectors.py``.

Every filter is strict: a value it cannot read is a form error, which the API answers with
400, rather than being silently ignored and returning everything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_filters as filters
from django import forms
from django.db.models import Q, QuerySet
from django_filters.fields import IsoDateTimeField

from calls.models import Call, CallEvent, CallStatus, Direction, Sentiment

# A call "has analysis" once any post-call analysis value arrived (call_analyzed).
HAS_ANALYSIS = ~Q(call_summary="") | ~Q(user_sentiment="") | Q(call_successful__isnull=False)

CALL_TYPES = [("phone_call", "phone_call"), ("web_call", "web_call")]
SEARCH_FIELDS = ("call_id", "from_number", "to_number", "call_summary", "transcript")
MAX_SEARCH_LENGTH = 200


class StrictBooleanField(forms.Field):
    """``true``/``false`` (or ``1``/``0``); anything else is an error, not "no filter"."""

    widget = forms.TextInput
    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        try:
            return self.VALUES[str(value).lower()]
        except KeyError:
            raise forms.ValidationError("Expected true or false.", code="invalid") from None


class StrictBooleanFilter(filters.BooleanFilter):
    field_class = StrictBooleanField


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 time, converted to UTC. PostgreSQL refuses UTC offsets beyond ±15:59,
    which ISO 8601 and Python allow (up to ±23:59), and a time near year 1 or 9999 may
    have no UTC equivalent at all: both are a 400 here rather than a database error."""

    def to_python(self, value: Any) -> datetime | None:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(
                "This time has no UTC equivalent.", code="invalid"
            ) from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class CallFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=CallStatus.choices)
    agent = filters.CharFilter(field_name="agent_id", label="Agent id.")
    direction = filters.ChoiceFilter(choices=Direction.choices)
    call_type = filters.ChoiceFilter(choices=CALL_TYPES)
    user_sentiment = filters.ChoiceFilter(choices=Sentiment.choices)
    successful = StrictBooleanFilter(field_name="call_successful", label="Call successful.")
    disconnection_reason = filters.CharFilter()
    from_number = filters.CharFilter()
    to_number = filters.CharFilter()
    started_after = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="gte", label="Started at or after (ISO 8601)."
    )
    started_before = UtcIsoDateTimeFilter(
        field_name="started_at", lookup_expr="lt", label="Started before (ISO 8601)."
    )
    has_analysis = StrictBooleanFilter(method="filter_has_analysis", label="Analysis received.")
    search = filters.CharFilter(
        method="filter_search",
        max_length=MAX_SEARCH_LENGTH,
        label="Case-insensitive text in the call id, numbers, summary or transcript.",
    )

    class Meta:
        model = Call
        fields: list[str] = []

    def filter_has_analysis(self, queryset: QuerySet[Call], name: str, value: bool) -> Any:
        return queryset.filter(HAS_ANALYSIS) if value else queryset.exclude(HAS_ANALYSIS)

    def filter_search(self, queryset: QuerySet[Call], name: str, value: str) -> Any:
        text = value.strip()
        if not text:
            return queryset
        match = Q()
        for field in SEARCH_FIELDS:
            match |= Q(**{f"{field}__icontains": text})
        return queryset.filter(match)


class CallEventFilter(filters.FilterSet):
    call = filters.CharFilter(field_name="call__call_id", label="Call id.")
    event = filters.CharFilter(label="Event name, e.g. call_ended.")
    received_after = UtcIsoDateTimeFilter(
        field_name="first_received_at", lookup_expr="gte", label="First received at or after."
    )
    received_before = UtcIsoDateTimeFilter(
        field_name="first_received_at", lookup_expr="lt", label="First received before."
    )

    class Meta:
        model = CallEvent
        fields: list[str] = []
