"""Writes. Every function takes keyword-only arguments and owns its transaction."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, transaction
from django.utils import timezone

from calls.batchread import CALL_MERGE_COLUMNS, BatchRead, batch_read
from calls.merge import Observation, merge, observation_version
from calls.models import TRANSCRIPT_DOCUMENTS, Call, CallEvent, EventSource
from calls.payloads import WebhookEvent, call_fields
from calls.realtime import calls_broadcast_on_commit
from calls.rowcursor import batch_transaction
from calls.rowreads import rows_locked
from calls.rowwrites import row_new, rows_counted, rows_insert, rows_update
from notifications.services import outbox_enqueue_for_delivery


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    call: Call
    event: CallEvent
    created: bool  # False when this was a re-delivery of an event already stored


def call_lock_or_create(*, call_id: str) -> Call:
    """The call's row, locked until the surrounding transaction ends; created if new.

    The lock serialises concurrent writes for one call, so the duplicate check and the
    merge see each other's work. INSERT ... ON CONFLICT DO NOTHING makes a racing creator
    wait for the first one's commit instead of failing; it then locks that row instead.
    (A webhook batch locks many calls at once: calls/batchread.py.)
    """
    locked = _calls_locked([call_id])
    if not locked:
        created = rows_insert([row_new(Call, call_id=call_id)], unless_exists="call_id")
        # A row inserted here is this transaction's own until it commits: already locked.
        locked = [_as_locked(call) for call in created] or _calls_locked([call_id])
    return locked[0]


def _calls_locked(call_ids: Collection[str]) -> list[Call]:
    return rows_locked(Call, key="call_id", values=call_ids, columns=CALL_MERGE_COLUMNS)


# What a locked read loads (rows_locked adds the key), in the model's column order.
_LOCKED_ATTNAMES = [
    f.attname
    for f in Call._meta.concrete_fields
    if f.primary_key or f.attname in CALL_MERGE_COLUMNS
]


def _as_locked(call: Call) -> Call:
    """A just-inserted call as a locked read returns it: only the merge columns loaded."""
    values = [getattr(call, name) for name in _LOCKED_ATTNAMES]
    return Call.from_db(call._state.db, _LOCKED_ATTNAMES, values)


# The call's references to events are set by key, not to the event itself: each new event
# refers to its call, and the two objects referring to each other would be a reference
# cycle, which keeps the event's parsed call object (thousands of small objects, most of
# them the transcript's words) alive until the garbage collector looks for cycles. Freed
# at once instead, the webhook's writer made no collection at all in 3,000 deliveries,
# where it spent about 4% of its CPU collecting before (bench/writer_cpu.py).
_EVENT_REFERENCES = {
    name: getattr(Call, name).field.attname for name in ("call_object_event", "transcript_event")
}


def call_merge(*, call: Call, observation: Observation, seen_at: datetime) -> list[str]:
    """Merge ``observation`` into the locked ``call`` in memory; returns the changed columns."""
    result = merge(call.field_versions, observation)
    for name, value in result.updates.items():
        if name in _EVENT_REFERENCES and value is not None:
            setattr(call, _EVENT_REFERENCES[name], value.pk)
        else:
            setattr(call, name, value)
    call.field_versions = {**call.field_versions, **result.versions}
    if call.last_event_at is None or seen_at > call.last_event_at:
        call.last_event_at = seen_at
    return list(result.updates)


MERGE_BOOKKEEPING = ("field_versions", "last_event_at", "updated_at")


def _merged_columns(changed: Iterable[str]) -> list[str]:
    return [*changed, *MERGE_BOOKKEEPING]


def call_observe(*, call: Call, observation: Observation, seen_at: datetime) -> list[str]:
    """Merge ``observation`` into the locked ``call`` and save; returns the changed columns."""
    changed = call_merge(call=call, observation=observation, seen_at=seen_at)
    rows_update([(call, _merged_columns(changed))])
    return changed


def delivery_observation(*, event: CallEvent, call: Mapping[str, Any] | None = None) -> Observation:
    """What one stored delivery's call object says, as the merge reads it (on arrival and on
    replay). If it is the most advanced, the call will point at ``event``.

    ``call`` is the call object as the caller parsed it, if it did (at least what
    ``parse_webhook_for_merge`` reads); else ``event.payload``.
    """
    if call is None:
        call = event.payload
    return Observation(
        event=event.event,
        fields=transcript_held(call_fields(call), by=event),
        call_object_event=event,
        version=observation_version(event=event.event, call=call, body_sha256=event.body_sha256),
    )


def transcript_held(fields: Mapping[str, Any], *, by: CallEvent | None) -> dict[str, Any]:
    """``fields`` with the structured transcript, if they carry one, as the call holds it:
    a reference to the stored event ``by`` that carried it, or inline when there is none.

    All three columns are set together (merge.SHARED_VERSION): whichever form wins, the
    other is cleared. A webhook's transcript is then written once, in its event's raw body,
    not again into the call on each delivery that carries it.
    """
    if not any(name in fields for name in TRANSCRIPT_DOCUMENTS):
        return dict(fields)
    if by is None:
        return {"transcript_with_tool_calls": None, **fields, "transcript_event": None}
    return {**fields, **dict.fromkeys(TRANSCRIPT_DOCUMENTS), "transcript_event": by}


@dataclass(frozen=True, slots=True)
class IncomingDelivery:
    """A verified delivery waiting to be stored."""

    event: WebhookEvent
    raw_body: bytes
    source_ip: str | None
    key_fingerprint: str
    source: str = EventSource.WEBHOOK


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
    delivery = IncomingDelivery(
        event=event,
        raw_body=raw_body,
        source_ip=source_ip,
        key_fingerprint=key_fingerprint,
        source=source,
    )
    return call_events_record(deliveries=[delivery])[0]


# A batch that took for unstored a call or a body another transaction stored meanwhile is
# written again, and then finds it stored: a retry of a delivery racing the original, say.
# Races on the same call cannot go on for long, but a limit keeps a fault from looping.
NEW_CALL_ATTEMPTS = 3


def call_events_record(*, deliveries: Sequence[IncomingDelivery]) -> list[DeliveryOutcome]:
    """Store verified deliveries and merge each into its call, all in one transaction.

    Each delivery ends as ``call_event_record`` describes. Many at once is the webhook's
    group commit (calls/ingest.py): one transaction, one read for the whole batch (lock
    the calls, look for stored bodies, reserve keys: calls/batchread.py), one statement per
    step rather than per delivery; each call is then saved once with everything merged
    into it, in arrival order.
    """
    if not deliveries:
        return []
    attempts = NEW_CALL_ATTEMPTS
    while True:
        taken = _Taken(call_ids=[], digests=[])
        try:
            return _recorded_once(deliveries, taken)
        except IntegrityError:
            attempts -= 1
            # Stored by now, by another transaction (whose INSERT this one's waited for):
            # written again, the batch finds them stored. Anything else is a real fault.
            if not attempts or not taken.stored_meanwhile():
                raise


@dataclass(frozen=True, slots=True)
class _Taken:
    """What an attempt found unstored and inserted as new."""

    call_ids: list[str]
    digests: list[str]

    def stored_meanwhile(self) -> bool:
        return (
            Call.objects.filter(call_id__in=self.call_ids).exists()
            or CallEvent.objects.filter(body_sha256__in=self.digests).exists()
        )


def _recorded_once(deliveries: Sequence[IncomingDelivery], taken: _Taken) -> list[DeliveryOutcome]:
    # Statements queued only in a transaction of its own: inside another, this block ends
    # with a savepoint's release, which would leave an error in the queued writes to
    # surface after Django took the block for done.
    outermost = not connection.in_atomic_block
    with transaction.atomic(), batch_transaction(outermost=outermost):
        return _events_recorded(deliveries, taken)


def _events_recorded(
    deliveries: Sequence[IncomingDelivery], taken: _Taken
) -> list[DeliveryOutcome]:
    now = timezone.now()
    digests = [hashlib.sha256(d.raw_body).hexdigest() for d in deliveries]
    call_ids = {d.event.call_id for d in deliveries}
    read = batch_read(call_ids, set(digests))
    calls, new_calls = _calls_by_id(read, call_ids)
    rows = _new_event_rows(deliveries, digests, calls=calls, read=read, now=now)
    taken.call_ids.extend(call.call_id for call in new_calls)
    taken.digests.extend(rows)
    rows_insert([row for row, _ in rows.values()], keyed=True)
    _merge_events(list(rows.values()), new_calls=new_calls, now=now)
    return _outcomes(deliveries, digests, calls=calls, rows=rows, read=read, now=now)


def _calls_by_id(read: BatchRead, call_ids: Collection[str]) -> tuple[dict[str, Call], list[Call]]:
    """The batch's calls by ``call_id``, and which of them are new: the stored ones as
    locked, new ones under the keys the read reserved. New ones are not inserted yet:
    their events can refer to them by key, and ``_merge_events`` inserts each once, whole,
    where inserting a blank row to update it later wrote every new call twice (on
    PostgreSQL, a second row version and an entry in each of its eleven indexes)."""
    calls = {call.call_id: call for call in read.calls}
    missing = sorted(set(call_ids) - calls.keys())
    new_calls = [
        row_new(Call, id=key, call_id=call_id)
        for key, call_id in zip(read.new_call_keys, missing, strict=True)
    ]
    calls.update((call.call_id, call) for call in new_calls)
    return calls, new_calls


NewEvents = dict[str, tuple[CallEvent, dict[str, Any]]]  # by digest: the row, its call object


def _new_event_rows(
    deliveries: Sequence[IncomingDelivery],
    digests: Sequence[str],
    *,
    calls: Mapping[str, Call],
    read: BatchRead,
    now: datetime,
) -> NewEvents:
    """An event row, under a reserved key, for the first delivery of each body not stored."""
    keys = iter(read.new_event_keys)
    rows: NewEvents = {}
    for delivery, digest in zip(deliveries, digests, strict=True):
        if digest not in read.stored_events and digest not in rows:
            call = calls[delivery.event.call_id]
            row = _event_row(delivery, call=call, key=next(keys), digest=digest, now=now)
            rows[digest] = (row, delivery.event.call)
    return rows


def _outcomes(
    deliveries: Sequence[IncomingDelivery],
    digests: Sequence[str],
    *,
    calls: Mapping[str, Call],
    rows: NewEvents,
    read: BatchRead,
    now: datetime,
) -> list[DeliveryOutcome]:
    """Each delivery's outcome, in order; re-deliveries (of a body stored before, or
    earlier in this batch) counted on the stored event."""
    events = {digest: row for digest, (row, _) in rows.items()}
    outcomes = []
    redelivered: Counter[int] = Counter()
    for delivery, digest in zip(deliveries, digests, strict=True):
        call = calls[delivery.event.call_id]
        row = events.pop(digest, None)  # only the first delivery of these bytes made a row
        if row is not None:
            outcomes.append(DeliveryOutcome(call=call, event=row, created=True))
            continue
        key = read.stored_events[digest] if digest in read.stored_events else rows[digest][0].pk
        redelivered[key] += 1
        outcomes.append(DeliveryOutcome(call=call, event=_stored_event(key), created=False))
    _count_redeliveries(redelivered, now=now)
    return outcomes


_EVENT_CALL = CallEvent._meta.get_field("call")


def _event_row(
    delivery: IncomingDelivery, *, call: Call, key: int, digest: str, now: datetime
) -> CallEvent:
    row = row_new(
        CallEvent,
        id=key,
        call_id=call.pk,
        event=delivery.event.event,
        source=delivery.source,
        raw_body=delivery.raw_body.decode("utf-8"),
        body_sha256=digest,
        payload_key=delivery.event.payload_key,
        first_received_at=now,
        last_received_at=now,
        source_ip=delivery.source_ip,
        key_fingerprint=delivery.key_fingerprint,
    )
    _EVENT_CALL.set_cached_value(row, call)  # row.call without a query
    if delivery.event.complete:
        row.remember_payload(delivery.event.call)  # parsed already (parse_webhook): not again
    return row


def _merge_events(
    rows: list[tuple[CallEvent, dict[str, Any]]], *, new_calls: list[Call], now: datetime
) -> None:
    """Merge new events, each with its call object as parsed, into their calls in arrival
    order; insert each new call and update each stored one, once.

    The events are inserted already, so a call can refer to the one whose call object won.
    """
    changed: dict[Call, set[str]] = {}
    for row, call_object in rows:
        observation = delivery_observation(event=row, call=call_object)
        columns = call_merge(call=row.call, observation=observation, seen_at=now)
        changed.setdefault(row.call, set()).update(columns)
    # A new call another transaction stored since this one looked fails this insert on its
    # unique call_id (in a pipeline, at the COMMIT); call_events_record then writes again.
    rows_insert(new_calls, keyed=True)
    new_keys = {call.pk for call in new_calls}
    rows_update(
        (call, _merged_columns(names)) for call, names in changed.items() if call.pk not in new_keys
    )
    calls_broadcast_on_commit(calls=list(changed))  # to the live monitor, once this commits
    # Side effects are outbox rows in this same transaction: they commit with the events
    # or not at all, and the request itself never touches the network (design rule 5).
    for row, _ in rows:
        outbox_enqueue_for_delivery(call=row.call, event=row)


def _stored_event(key: int) -> CallEvent:
    """A stored event by key, its columns loaded on first access (a re-delivery's answer
    needs none of them)."""
    return CallEvent.from_db(DEFAULT_DB_ALIAS, ["id"], [key])


def _count_redeliveries(counts: Mapping[int, int], *, now: datetime) -> None:
    """Add each stored event's re-deliveries in this batch to its count; nothing is read
    back, so on PostgreSQL the update goes with the COMMIT."""
    rows_counted(CallEvent, "delivery_count", counts, also={"last_received_at": now})
