"""Replay (an admin action): stored deliveries merged again through the same merge as on
arrival, to repair calls after a merge fix or a restored backup. The merge is idempotent,
so replaying changes nothing when the call already reflects its events. Socket sessions
store a summary, not a call object, so only deliveries of call objects are replayed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import Any

from django.db import transaction

from calls.models import Call, CallEvent, EventSource
from calls.services import call_observe, delivery_observation

REPLAYABLE_SOURCES = (EventSource.WEBHOOK, EventSource.RETELL_API)
# Bookkeeping columns that every merge touches; not worth showing as a change.
REPLAY_QUIET_FIELDS = {"field_versions", "updated_at", "last_event_at"}


@dataclass(frozen=True, slots=True)
class ReplayChange:
    call_id: str
    field: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class ReplayResult:
    replayed: int
    skipped: int
    changes: list[ReplayChange]
    dry_run: bool


def _replay_call(*, call: Call, events: list[CallEvent]) -> list[ReplayChange]:
    before = call.column_values()
    for event in events:
        observation = delivery_observation(event=event)
        call_observe(call=call, observation=observation, seen_at=event.first_received_at)
    after = call.column_values()
    return [
        ReplayChange(call_id=call.call_id, field=name, before=value, after=after[name])
        for name, value in before.items()
        if name not in REPLAY_QUIET_FIELDS and value != after[name]
    ]


@transaction.atomic
def call_events_replay(*, event_ids: Iterable[int], dry_run: bool) -> ReplayResult:
    """Merge the given stored events into their calls again, oldest first per call.

    A dry run does exactly the same work and then rolls its savepoint back, so what it
    reports is what a real replay would change.
    """
    ids = set(event_ids)
    events = list(
        CallEvent.objects.filter(pk__in=ids, source__in=REPLAYABLE_SOURCES).order_by(
            "call_id", "first_received_at", "pk"
        )
    )
    changes: list[ReplayChange] = []
    for call_pk, group in groupby(events, key=attrgetter("call_id")):
        call = Call.objects.select_for_update().get(pk=call_pk)
        changes.extend(_replay_call(call=call, events=list(group)))
    if dry_run:
        transaction.set_rollback(True)
    return ReplayResult(
        replayed=len(events), skipped=len(ids) - len(events), changes=changes, dry_run=dry_run
    )
