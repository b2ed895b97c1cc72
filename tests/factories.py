"""factory_boy factories for calls, events, users and API tokens."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from calls.models import Call, CallEvent

# 2026-01-05 09:00 UTC, a Monday: tests count days and weeks from here.
BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.django.Password("pw-for-tests-only")


class StaffFactory(UserFactory):
    is_staff = True


class CallFactory(DjangoModelFactory):
    class Meta:
        model = Call

    call_id = factory.Sequence(lambda n: f"call_{n:06d}")
    agent_id = "agent_reception"
    agent_version = 3
    agent_name = "Reception"
    call_type = "phone_call"
    direction = "inbound"
    from_number = factory.Sequence(lambda n: f"+1415555{n % 10000:04d}")
    to_number = "+14155559876"
    status = "ended"
    started_at = factory.Sequence(lambda n: BASE_TIME + timedelta(minutes=n))
    duration_ms = 60_000
    ended_at = factory.LazyAttribute(
        lambda o: (
            o.started_at + timedelta(milliseconds=o.duration_ms or 0) if o.started_at else None
        )
    )
    disconnection_reason = "user_hangup"
    transcript = "Agent: Hello.\nUser: Hi, I need help.\n"
    transcript_object = factory.LazyFunction(
        lambda: [
            {"role": "agent", "content": "Hello."},
            {"role": "user", "content": "Hi, I need help."},
        ]
    )
    recording_url = "https://example.com/recording.wav"
    public_log_url = "https://example.com/public.log"
    call_summary = "The caller needed help."
    user_sentiment = "Positive"
    call_successful = True
    in_voicemail = False
    combined_cost = Decimal("12.5000")
    last_event = "call_analyzed"
    last_event_at = factory.LazyAttribute(lambda o: o.ended_at)


def _call_object(event: Any) -> dict[str, Any]:
    call = event.call
    return {"call_id": call.call_id, "call_status": call.status, "agent_id": call.agent_id}


def _raw_body(event: Any) -> str:
    document = {"event": event.event, event.payload_key: event.payload}
    return json.dumps(document if event.payload_key else event.payload)


class CallEventFactory(DjangoModelFactory):
    class Meta:
        model = CallEvent

    class Params:
        # Not a column: CallEvent.payload is read from raw_body, which is built around it.
        payload = factory.LazyAttribute(_call_object)

    call = factory.SubFactory(CallFactory)
    event = "call_ended"
    raw_body = factory.LazyAttribute(_raw_body)
    # Unique like a real body hash, even for equal bodies built by tests.
    body_sha256 = factory.Sequence(lambda n: hashlib.sha256(f"event-{n}".encode()).hexdigest())
    payload_key = "call"
    first_received_at = factory.LazyAttribute(
        lambda o: o.call.ended_at or o.call.started_at or BASE_TIME
    )
    last_received_at = factory.LazyAttribute(lambda o: o.first_received_at)
    source_ip = "100.20.5.228"
    key_fingerprint = "fp_test"
