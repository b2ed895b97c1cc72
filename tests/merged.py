"""A call's lifecycle deliveries, and its merged state, as the order-freedom and batch
tests send and compare them."""

from __future__ import annotations

from typing import Any

from calls.models import Call
from calls.payloads import parse_webhook
from calls.services import IncomingDelivery
from tests import retell

# Columns that legitimately depend on when things arrived, not on what arrived. The events
# the call object and the transcript come from are among them by id (ids follow arrival
# order), so they are compared by their body hashes, and what they hold by content.
ARRIVAL_COLUMNS = {"id", "created_at", "updated_at", "last_event_at", "call_object_event_id"}


def merged_state(call_id: str) -> dict[str, Any]:
    call = Call.objects.select_related("call_object_event", "transcript_event").get(call_id=call_id)
    values = call.column_values()  # the transcript read through its reference
    state = {name: value for name, value in values.items() if name not in ARRIVAL_COLUMNS}
    for name in ("call_object_event", "transcript_event"):
        event = getattr(call, name)
        state[name] = None if event is None else event.body_sha256
    state["call_object"] = call.call_object
    return state


LIFECYCLE = [
    "call_started",
    "transcript_updated",
    "transfer_started",
    "call_ended",
    "call_analyzed",
]
CALL_ID = "call_7d1f0c2e9b8a4c55"


def lifecycle_bodies(call_id: str) -> list[bytes]:
    return [
        retell.compact(retell.with_call_id(retell.fixture_json(name), call_id))
        for name in LIFECYCLE
    ]


def incoming(body: bytes) -> IncomingDelivery:
    return IncomingDelivery(
        event=parse_webhook(body), raw_body=body, source_ip="100.20.5.228", key_fingerprint="k"
    )
