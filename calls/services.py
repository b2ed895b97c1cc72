"""Writes. Every function takes keyword-only arguments and owns its transaction."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from operator import attrgetter
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from calls.merge import Observation, merge, observation_version
from calls.models import Call, CallEvent, EventSource
from calls.payloads import WebhookEvent, call_fields
from calls.realtime import call_broadcast_on_commit
from notifications.services import outbox_enqueue_for_delivery

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    call: Call
    event: CallEvent
    created: bool  # False when this was a re-delivery of an event already stored


def _unique_row(queryset: QuerySet[Any, Row]) -> Row | None:
    """The row of a lookup by a unique column, or None.

    Without the ORDER BY that ``first()`` adds from ``Meta.ordering``: one row cannot need
    sorting, and compiling that clause was a tenth of the webhook's ORM time.
    """
    return next(iter(queryset.order_by()[:1]), None)


# The merge reads only field_versions and writes what changed, so the call's bulky columns
# (the transcript twice over and the full call object, tens of KB of JSON to decode) are
# not read when it is locked; code that does use one loads it on first access.
CALL_BULKY_COLUMNS = (
    "transcript",
    "transcript_object",
    "transcript_with_tool_calls",
    "call_object",
)


def call_lock_or_create(*, call_id: str) -> Call:
    """The call's row, locked until the surrounding transaction ends; created if new.

    The lock serialises concurrent deliveries for one call (Retell retries while the first
    attempt is still in flight), so the duplicate check and the merge below see each
    other's work. INSERT ... ON CONFLICT DO NOTHING makes a racing creator wait for the
    first one's commit instead of failing.
    """
    locked = Call.objects.select_for_update().defer(*CALL_BULKY_COLUMNS)
    call = _unique_row(locked.filter(call_id=call_id))
    if call is None:
        Call.objects.bulk_create([Call(call_id=call_id)], ignore_conflicts=True)
        call = locked.get(call_id=call_id)
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


def delivery_observation(*, event: str, call: dict[str, Any], body_sha256: str) -> Observation:
    """What one delivered call object says, as the merge reads it (on arrival and on replay)."""
    return Observation(
        event=event,
        fields=call_fields(call),
        call_object=call,
        version=observation_version(event=event, call=call, body_sha256=body_sha256),
    )


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
    # Only the key: the usual answer is "none", and a duplicate's row is read once updated.
    stored_pk = _unique_row(
        CallEvent.objects.filter(body_sha256=body_sha256).values_list("pk", flat=True)
    )
    if stored_pk is not None:
        CallEvent.objects.filter(pk=stored_pk).update(
            delivery_count=F("delivery_count") + 1, last_received_at=now
        )
        stored = CallEvent.objects.get(pk=stored_pk)
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
    observation = delivery_observation(event=event.event, call=event.call, body_sha256=body_sha256)
    call_observe(call=call, observation=observation, seen_at=now)
    # Side effects are outbox rows in this same transaction: they commit with the event
    # or not at all, and the request itself never touches the network (design rule 5).
    outbox_enqueue_for_delivery(call=call, event=row)
    call_broadcast_on_commit(call=call)  # to the live monitor, once this commits
    return DeliveryOutcome(call=call, event=row, created=True)


# --- The call socket's records (calls/llm/) ---------------------------------------------
# The socket observes a call too: call_details and the live transcript. They go through the
# same versioned merge as the webhooks under their own rank (merge.EVENT_RANK), so the
# final Call still does not depend on what arrived when.
SOCKET_OBSERVATION = "llm_socket"
SOCKET_SESSION_EVENT = "llm_session"


def _canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def _socket_observation(*, fields: Mapping[str, Any]) -> Observation:
    # Hash of the content, not of the arrival, so equal observations tie-break equally.
    digest = hashlib.sha256(_canonical_json(fields)).hexdigest()
    version = observation_version(
        event=SOCKET_OBSERVATION,
        call={"transcript_object": fields.get("transcript_object")},
        body_sha256=digest,
    )
    return Observation(event=SOCKET_OBSERVATION, fields=fields, call_object=None, version=version)


@transaction.atomic
def call_socket_observe(*, call_id: str, fields: Mapping[str, Any], seen_at: datetime) -> Call:
    """Merge what the socket learnt (column values) into the call, creating it if new."""
    call = call_lock_or_create(call_id=call_id)
    call_observe(call=call, observation=_socket_observation(fields=fields), seen_at=seen_at)
    return call


@transaction.atomic
def call_socket_session_record(
    *, call_id: str, summary: Mapping[str, Any], fields: Mapping[str, Any], seen_at: datetime
) -> CallEvent:
    """Store a finished socket session as a CallEvent, with its last observation merged."""
    raw_body = _canonical_json(summary)
    call = call_lock_or_create(call_id=call_id)
    if fields:
        call_observe(call=call, observation=_socket_observation(fields=fields), seen_at=seen_at)
    return CallEvent.objects.create(
        call=call,
        event=SOCKET_SESSION_EVENT,
        source=EventSource.LLM_SOCKET,
        payload=dict(summary),
        raw_body=raw_body.decode("utf-8"),
        body_sha256=hashlib.sha256(raw_body).hexdigest(),
        first_received_at=seen_at,
        last_received_at=seen_at,
    )


# --- Replay (admin action) ----------------------------------------------------------------
# Stored deliveries merged again through the same merge as on arrival: repairs calls after a
# merge fix or a restored backup. The merge is idempotent, so replaying changes nothing when
# the call already reflects its events. Socket sessions store a summary, not a call object,
# so only deliveries of call objects are replayed.
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
    columns = [
        f.attname for f in Call._meta.concrete_fields if f.attname not in REPLAY_QUIET_FIELDS
    ]
    before = {name: getattr(call, name) for name in columns}
    for event in events:
        observation = delivery_observation(
            event=event.event, call=event.payload, body_sha256=event.body_sha256
        )
        call_observe(call=call, observation=observation, seen_at=event.first_received_at)
    return [
        ReplayChange(call_id=call.call_id, field=name, before=value, after=getattr(call, name))
        for name, value in before.items()
        if value != getattr(call, name)
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
