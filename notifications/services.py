"""Writes the calls app makes in its own transactions: queue side effects, forget them.

The life of a side effect:

1. ``outbox_enqueue_for_delivery`` runs *inside* the webhook's transaction
   (``calls.services.call_event_record``): it writes one ``Delivery`` per destination
   that wants the event (and one per call for recording capture) and enqueues a task for
   each through django-tasks' database backend, whose ``enqueue`` is a plain INSERT on
   the same connection. Commit writes event, deliveries and tasks together; a rollback
   leaves none of them. No network here, so the webhook stays fast.
2. The worker (``manage.py db_worker``) runs ``delivery_run`` -> ``delivery_attempt``
   (notifications/attempts.py): claim the delivery (short transaction), send (no
   transaction open; notifications/sending.py), then record the attempt and either finish
   it or schedule the next attempt with exponential backoff by enqueueing a new task with
   ``run_after`` (again one transaction), until ``max_attempts`` makes it dead.

Exactly once per destination: the unique (destination, event) constraint allows one
delivery, and the claim (``locked_until``) lets only one task attempt it at a time, so
duplicate tasks (a retry clicked twice, a requeue) skip. If a worker dies after the
receiver answered but before we recorded it, the next attempt re-sends with the same
``webhook-id`` for receivers to dedupe on: that window is at-least-once.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from calls.models import Call, CallEvent
from calls.payloads import call_fields
from notifications import messages
from notifications.destinations import destination_list_synced
from notifications.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    Destination,
    DestinationKind,
    Recording,
)
from notifications.queue import delivery_enqueue_attempt

# --- Enqueue (inside the webhook's transaction) -------------------------------------------


def _matching_triggers(*, destination: Destination, event: CallEvent) -> list[str]:
    wanted = destination.event_list
    if destination.kind == DestinationKind.FORWARD:
        return [event.event] if not wanted or event.event in wanted else []
    found = messages.slack_triggers(event=event.event, fields=call_fields(event.payload))
    return [trigger for trigger in found if not wanted or trigger in wanted]


def admin_call_url(*, call: Call) -> str:
    path = reverse("admin:calls_call_change", args=[call.pk])
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def _destination_body(
    *, destination: Destination, call: Call, event: CallEvent, triggers: list[str]
) -> str:
    if destination.kind == DestinationKind.FORWARD:
        return messages.to_json(messages.forward_document(event=event))
    return messages.to_json(
        messages.slack_message(
            call=call,
            triggers=triggers,
            admin_url=admin_call_url(call=call),
            show_numbers=destination.show_phone_numbers,
        )
    )


def _new_delivery(*, kind: str, call: Call, now: datetime, **fields: Any) -> Delivery:
    return Delivery(
        kind=kind,
        call=call,
        message_id=f"msg_{uuid.uuid4().hex}",
        max_attempts=settings.OUTBOX_MAX_ATTEMPTS,
        next_attempt_at=now,
        **fields,
    )


def _destination_deliveries(*, call: Call, event: CallEvent, now: datetime) -> list[Delivery]:
    deliveries = []
    for destination in destination_list_synced():
        triggers = _matching_triggers(destination=destination, event=event)
        if not destination.enabled or not triggers:
            continue
        deliveries.append(
            _new_delivery(
                kind=destination.kind,
                call=call,
                now=now,
                destination=destination,
                event=event,
                triggers=",".join(triggers),
                body=_destination_body(
                    destination=destination, call=call, event=event, triggers=triggers
                ),
            )
        )
    return deliveries


def _recording_deliveries(*, call: Call, event: CallEvent, now: datetime) -> list[Delivery]:
    # The call's row is locked by the caller, so this check cannot race another delivery
    # of the same call; the unique constraint backs it up.
    if not settings.RECORDINGS_CAPTURE or not call.recording_url:
        return []
    if Delivery.objects.filter(call=call, kind=DeliveryKind.RECORDING).exists():
        return []
    return [
        _new_delivery(
            kind=DeliveryKind.RECORDING,
            call=call,
            now=now,
            event=event,
            source_url=call.recording_url,
        )
    ]


def outbox_enqueue_for_delivery(*, call: Call, event: CallEvent) -> list[Delivery]:
    """Queue every side effect of a newly stored event, in the caller's transaction.

    Called by ``call_event_record`` after the merge, with ``call`` locked and merged.
    """
    now = timezone.now()
    deliveries = [
        *_destination_deliveries(call=call, event=event, now=now),
        *_recording_deliveries(call=call, event=event, now=now),
    ]
    for delivery in deliveries:
        delivery.save()
        delivery_enqueue_attempt(delivery=delivery)
    return deliveries


# --- Retention (inside calls.retention's transactions) ----------------------------------


def outbox_scrub_bodies(*, calls: Iterable[Call]) -> int:
    """Forget the bodies of finished deliveries (they hold numbers and summaries)."""
    return (
        Delivery.objects.filter(call__in=list(calls))
        .exclude(state=DeliveryState.PENDING)
        .exclude(body="")
        .update(body="")
    )


def recording_delete(*, calls: Iterable[Call]) -> int:
    """Delete captured recordings and their files (the files go once the row is gone)."""
    deleted, _ = Recording.objects.filter(call__in=list(calls)).delete()
    return deleted
