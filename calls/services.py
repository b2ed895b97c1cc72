"""Writes. Every function takes keyword-only arguments and owns its transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from calls.merge import Observation, merge, observation_version
from calls.models import Call, CallEvent, EventSource
from calls.payloads import WebhookEvent, call_fields


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    call: Call
    event: CallEvent
    created: bool  # False when this was a re-delivery of an event already stored


def call_lock_or_create(*, call_id: str) -> Call:
    """The call's row, locked until the surrounding transaction ends; created if new.

    The lock serialises concurrent deliveries for one call (Retell retries while the first
    attempt is still in flight), so the duplicate check and the merge below see each
    other's work. INSERT ... ON CONFLICT DO NOTHING makes a racing creator wait for the
    first one's commit instead of failing.
    """
    call = Call.objects.select_for_update().filter(call_id=call_id).first()
    if call is None:
        Call.objects.bulk_create([Call(call_id=call_id)], ignore_conflicts=True)
        call = Call.objects.select_for_update().get(call_id=call_id)
    return call


def call_observe(*, call: Call, observation: Observation, seen_at: datetime) -> list[str]:
    """Merge ``observation`` into the locked ``call`` and save; returns the changed columns."""
    result = merge(call.field_versions, observation)
    for name, value in result.updates.items():
        setattr(call, name, value)
    call.field_versions = {**call.field_versions, **result.versions}
    if call.last_event_at is None or seen_at > call.last_event_at:
        call.last_event_at = seen_at
    changed = list(result.updates)
    call.save(update_fields=[*changed, "field_versions", "last_event_at", "updated_at"])
    return changed


@transaction.atomic
def call_event_record(
    *,
    event: WebhookEvent,
    raw_body: bytes,
    source_ip: str | None,
    key_fingerprint: str,
    source: str = EventSource.WEBHOOK,
) -> DeliveryOutcome:
    """Store one verified delivery and merge it into its call, in one transaction.

    An identical re-delivery (same bytes) adds no row: it bumps the stored event's
    ``delivery_count`` and leaves the call as it was.
    """
    now = timezone.now()
    body_sha256 = hashlib.sha256(raw_body).hexdigest()
    call = call_lock_or_create(call_id=event.call_id)
    stored = CallEvent.objects.filter(body_sha256=body_sha256).first()
    if stored is not None:
        CallEvent.objects.filter(pk=stored.pk).update(
            delivery_count=F("delivery_count") + 1, last_received_at=now
        )
        stored.refresh_from_db(fields=["delivery_count", "last_received_at"])
        return DeliveryOutcome(call=call, event=stored, created=False)
    row = CallEvent.objects.create(
        call=call,
        event=event.event,
        source=source,
        payload=event.call,
        raw_body=raw_body.decode("utf-8"),
        body_sha256=body_sha256,
        payload_key=event.payload_key,
        first_received_at=now,
        last_received_at=now,
        source_ip=source_ip,
        key_fingerprint=key_fingerprint,
    )
    observation = Observation(
        event=event.event,
        fields=call_fields(event.call),
        call_object=event.call,
        version=observation_version(event=event.event, call=event.call, body_sha256=body_sha256),
    )
    call_observe(call=call, observation=observation, seen_at=now)
    return DeliveryOutcome(call=call, event=row, created=True)
