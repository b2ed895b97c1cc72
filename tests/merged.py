"""The merged state of a call, as the order-freedom tests compare it."""

from __future__ import annotations

from typing import Any

from calls.models import Call

# Columns that legitimately depend on when things arrived, not on what arrived. The event
# the call object comes from is one of them by id (ids follow arrival order), so it is
# compared by its body hash and its call object instead.
ARRIVAL_COLUMNS = {"id", "created_at", "updated_at", "last_event_at", "call_object_event_id"}


def merged_state(call_id: str) -> dict[str, Any]:
    row = Call.objects.values().get(call_id=call_id)
    state = {name: value for name, value in row.items() if name not in ARRIVAL_COLUMNS}
    call = Call.objects.select_related("call_object_event").get(call_id=call_id)
    event = call.call_object_event
    state["call_object_event"] = None if event is None else event.body_sha256
    state["call_object"] = call.call_object
    return state
