"""The merged state of a call, as the order-freedom tests compare it."""

from __future__ import annotations

from typing import Any

from calls.models import Call

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
