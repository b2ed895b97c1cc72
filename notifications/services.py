"""Writes for the outbox. Keyword-only arguments; each function says whose transaction it uses.

The life of a side effect:

1. ``outbox_enqueue_for_delivery`` runs *inside* the webhook's transaction
   (``calls.services.call_event_record``): it writes one ``Delivery`` per destination
   that wants the event (and one per call for recording capture) and enqueues a task for
   each through django-tasks' database backend, whose ``enqueue`` is a plain INSERT on
   the same connection. Commit writes event, deliveries and tasks together; a rollback
   leaves none of them. No network here, so the webhook stays fast.
2. The worker (``manage.py db_worker``) runs ``delivery_run`` -> ``delivery_attempt``:
   claim the delivery (short transaction), send (no transaction open), then record the
   attempt and either finish it or schedule the next attempt with exponential backoff by
   enqueueing a new task with ``run_after`` (again one transaction), until
   ``max_attempts`` makes it dead.

Exactly once per destination: the unique (destination, event) constraint allows one
delivery, and the claim (``locked_until``) lets only one task attempt it at a time, so
duplicate tasks (a retry clicked twice, a requeue) skip. If a worker dies after the
receiver answered but before we recorded it, the next attempt re-sends with the same
``webhook-id`` for receivers to dedupe on: that window is at-least-once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from calls.models import Call, CallEvent
from calls.payloads import call_fields
from notifications import messages, signing, transport
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryKind,
    DeliveryState,
    Destination,
    DestinationKind,
    Recording,
    recording_upload_to,
)

logger = logging.getLogger(__name__)

# How long a claimed attempt may run before another worker may take the delivery over.
CLAIM_LEASE = timedelta(minutes=5)
ENV_SLACK_KEY = "env:slack"
ENV_FORWARD_KEY_PREFIX = "env:forward:"
# How long another process's first destination may go unseen (see _EmptyTableMemo).
DESTINATIONS_EMPTY_TTL_SECONDS = 5.0


# --- Destinations from the environment ---------------------------------------------------


def _env_destinations() -> list[Destination]:
    wanted: list[Destination] = []
    if settings.SLACK_WEBHOOK_URL:
        wanted.append(
            Destination(
                env_key=ENV_SLACK_KEY,
                name="Slack (SLACK_WEBHOOK_URL)",
                kind=DestinationKind.SLACK,
                # The URL is the credential: the row shows where, settings hold the secret.
                url="https://hooks.slack.com/services/(from-environment)",
                events=",".join(settings.SLACK_NOTIFY_EVENTS),
                show_phone_numbers=settings.SLACK_SHOW_PHONE_NUMBERS,
            )
        )
    for index, url in enumerate(settings.FORWARD_URLS, start=1):
        wanted.append(
            Destination(
                env_key=f"{ENV_FORWARD_KEY_PREFIX}{index}",
                name=f"Forward {index} (FORWARD_URLS)",
                kind=DestinationKind.FORWARD,
                url=url,
                events=",".join(settings.FORWARD_EVENTS),
            )
        )
    return wanted


SYNCED_FIELDS = ("name", "kind", "url", "events", "show_phone_numbers", "enabled")


def _destination_update(*, row: Destination, want: Destination) -> None:
    if any(getattr(row, name) != getattr(want, name) for name in SYNCED_FIELDS):
        for name in SYNCED_FIELDS:
            setattr(row, name, getattr(want, name))
        row.save()


def destination_sync_from_settings(*, existing: list[Destination]) -> list[Destination]:
    """Make the environment's destinations rows; returns every destination, synced.

    Writes only what differs, so the common case is the one SELECT the caller already did.
    Rows whose variable was removed are disabled, not deleted: their log stays.
    """
    rows = {row.env_key: row for row in existing if row.env_key is not None}
    wanted = {row.env_key: row for row in _env_destinations() if row.env_key is not None}
    for key, row in rows.items():
        if key not in wanted and row.enabled:
            row.enabled = False
            row.save(update_fields=["enabled", "updated_at"])
    for key, want in wanted.items():
        if key not in rows:
            # get_or_create: two first-ever webhooks may race to create the same row.
            fields = {name: getattr(want, name) for name in SYNCED_FIELDS}
            rows[key], _ = Destination.objects.get_or_create(env_key=key, defaults=fields)
        _destination_update(row=rows[key], want=want)
    return [*(row for row in existing if row.env_key is None), *rows.values()]


def destination_target(*, destination: Destination) -> tuple[str, str]:
    """(URL, signing secret) to use now; environment rows read them from settings."""
    if destination.env_key == ENV_SLACK_KEY:
        return settings.SLACK_WEBHOOK_URL, ""
    if destination.env_key:
        return destination.url, settings.FORWARD_SIGNING_SECRET
    return destination.url, destination.signing_secret


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


class _EmptyTableMemo:
    """Remembers for a few seconds that a table was seen empty.

    Most installations configure no destinations, yet every delivery asked for them: a
    query per webhook. Saves and deletes in this process forget the memo at once (and
    again at their commit, so a read racing the writer's transaction cannot bring it
    back); another process's first destination is seen after at most ``ttl`` seconds, so
    events in that window are not sent to it. The generation makes a read that a write
    overtook unable to store its stale "empty".
    """

    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self.generation = 0
        self._empty_until = 0.0

    def known_empty(self) -> bool:
        return time.monotonic() < self._empty_until

    def remember_empty(self, *, generation: int) -> None:
        if generation == self.generation:
            self._empty_until = time.monotonic() + self.ttl

    def forget(self) -> None:
        self.generation += 1
        self._empty_until = 0.0


# Forgotten by notifications.signals whenever a destination is saved or deleted.
destinations_empty = _EmptyTableMemo(ttl=DESTINATIONS_EMPTY_TTL_SECONDS)


def _destination_rows() -> list[Destination]:
    if destinations_empty.known_empty():
        return []
    generation = destinations_empty.generation
    rows = list(Destination.objects.all())
    if not rows:
        destinations_empty.remember_empty(generation=generation)
    return rows


def _destination_deliveries(*, call: Call, event: CallEvent, now: datetime) -> list[Delivery]:
    destinations = destination_sync_from_settings(existing=_destination_rows())
    deliveries = []
    for destination in destinations:
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


def _enqueue_attempt(*, delivery: Delivery, run_after: datetime | None = None) -> None:
    from notifications.tasks import delivery_run

    task = delivery_run.using(run_after=run_after) if run_after else delivery_run
    task.enqueue(delivery.pk)


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
        _enqueue_attempt(delivery=delivery)
    return deliveries


# --- Attempt (in the worker) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: transport.HttpOutcome
    download: transport.Download | None = None
    stored_name: str = ""


def backoff_delay(*, attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failure: base, 2 x base, 4 x base, ... capped."""
    seconds = settings.OUTBOX_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.OUTBOX_BACKOFF_MAX_SECONDS))


def _due(now: datetime) -> Q:
    return Q(state=DeliveryState.PENDING, next_attempt_at__lte=now) & (
        Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    )


@transaction.atomic
def _delivery_claim(*, delivery_id: int, now: datetime) -> Delivery | None:
    """Take the delivery for one attempt, or None if it is not due or someone has it."""
    delivery = (
        # of=self: PostgreSQL cannot lock the nullable side of the destination join.
        Delivery.objects.select_for_update(of=("self",))
        .select_related("destination", "call")
        .filter(_due(now), pk=delivery_id)
        .first()
    )
    if delivery is None:
        return None
    delivery.attempts += 1
    delivery.locked_until = now + CLAIM_LEASE
    delivery.last_attempt_at = now
    delivery.save(update_fields=["attempts", "locked_until", "last_attempt_at"])
    return delivery


def _send_to_destination(delivery: Delivery, *, now: datetime) -> SendResult:
    assert delivery.destination is not None  # noqa: S101 - only recordings have none
    url, secret = destination_target(destination=delivery.destination)
    body = delivery.body.encode("utf-8")
    headers: dict[str, str] = {}
    if delivery.kind == DeliveryKind.FORWARD:
        # The timestamp is per attempt (receivers reject stale ones); the id is not.
        headers = signing.headers(
            secret=secret, message_id=delivery.message_id, timestamp=int(now.timestamp()), body=body
        )
    outcome = transport.http_post(
        url=url, body=body, headers=headers, timeout=settings.OUTBOX_HTTP_TIMEOUT_SECONDS
    )
    return SendResult(outcome=outcome)


def _send_recording_download(delivery: Delivery, *, now: datetime) -> SendResult:
    directory = Path(settings.FILE_UPLOAD_TEMP_DIR or Path(settings.MEDIA_ROOT) / "tmp")
    directory.mkdir(parents=True, exist_ok=True)
    download = transport.http_download(
        url=delivery.source_url,
        timeout=settings.OUTBOX_HTTP_TIMEOUT_SECONDS,
        max_bytes=settings.RECORDINGS_MAX_BYTES,
        directory=directory,
    )
    if download.path is None:
        return SendResult(outcome=download.outcome)
    # Into storage before the finishing transaction, so no file copy holds a lock.
    extension = Path(delivery.source_url.split("?")[0]).suffix[:10] or ".bin"
    name = recording_upload_to(Recording(call=delivery.call), f"{download.sha256[:16]}{extension}")
    with download.path.open("rb") as handle:
        stored_name = default_storage.save(name, File(handle))
    download.path.unlink(missing_ok=True)
    return SendResult(outcome=download.outcome, download=download, stored_name=stored_name)


def _delivery_send(delivery: Delivery, *, now: datetime) -> SendResult:
    if delivery.kind == DeliveryKind.RECORDING:
        return _send_recording_download(delivery, now=now)
    return _send_to_destination(delivery, now=now)


def _recording_store(*, delivery: Delivery, result: SendResult, now: datetime) -> None:
    assert result.download is not None  # noqa: S101 - a successful capture has a download
    recording = Recording.objects.filter(call=delivery.call).first() or Recording(
        call=delivery.call
    )
    recording.source_url = delivery.source_url
    recording.file.name = result.stored_name
    recording.size_bytes = result.download.size_bytes
    recording.sha256 = result.download.sha256
    recording.content_type = result.download.content_type
    recording.captured_at = now
    recording.save()


def _schedule_retry(*, delivery: Delivery, now: datetime) -> None:
    # Counted from the end of the failed attempt, so a slow timeout does not eat the wait.
    delivery.next_attempt_at = now + backoff_delay(attempts=delivery.attempts)
    _enqueue_attempt(delivery=delivery, run_after=delivery.next_attempt_at)


@transaction.atomic
def _delivery_finish(
    *, delivery: Delivery, started: datetime, result: SendResult, now: datetime
) -> str:
    """Log the attempt and move the delivery on: succeeded, retry later, or dead."""
    outcome = result.outcome
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=started,
        finished_at=now,
        latency_ms=outcome.latency_ms,
        status_code=outcome.status_code,
        succeeded=outcome.ok,
        error=outcome.error,
    )
    delivery.locked_until = None
    delivery.last_status_code = outcome.status_code
    delivery.last_error = outcome.error
    if outcome.ok:
        if delivery.kind == DeliveryKind.RECORDING:
            _recording_store(delivery=delivery, result=result, now=now)
        delivery.state = DeliveryState.SUCCEEDED
        delivery.finished_at = now
    elif delivery.attempts >= delivery.max_attempts:
        delivery.state = DeliveryState.DEAD
        delivery.finished_at = now
        logger.warning(
            "delivery %s (%s) is dead after %s attempts: %s",
            delivery.pk,
            delivery.kind,
            delivery.attempts,
            outcome.error,
        )
    else:
        _schedule_retry(delivery=delivery, now=now)
    delivery.save()
    return str(delivery.state)


def delivery_attempt(*, delivery_id: int) -> str:
    """One attempt at one delivery; what the task runs. Returns what became of it.

    Failures of the receiver never raise: they are the delivery's state, not the task's,
    so the task row stays a clean record of "ran" and its traceback never holds payloads.
    """
    started = timezone.now()
    delivery = _delivery_claim(delivery_id=delivery_id, now=started)
    if delivery is None:
        return "skipped"
    result = _delivery_send(delivery, now=started)
    state = _delivery_finish(delivery=delivery, started=started, result=result, now=timezone.now())
    logger.info(
        "delivery %s (%s) attempt %s: %s %s",
        delivery.pk,
        delivery.kind,
        delivery.attempts,
        result.outcome.status_code or result.outcome.error,
        state,
    )
    return state


# --- Operator actions -----------------------------------------------------------------------


@transaction.atomic
def delivery_retry(*, delivery_ids: Iterable[int]) -> int:
    """Send these again now: dead ones get a fresh budget, waiting ones skip the wait.

    Deliveries that succeeded or have an attempt in flight are left alone, so a retry can
    never make a destination receive an event twice.
    """
    now = timezone.now()
    retried = 0
    deliveries = Delivery.objects.select_for_update().filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=now),
        pk__in=list(delivery_ids),
        state__in=[DeliveryState.PENDING, DeliveryState.DEAD],
    )
    for delivery in deliveries:
        if delivery.state == DeliveryState.DEAD:
            delivery.max_attempts = delivery.attempts + settings.OUTBOX_MAX_ATTEMPTS
        delivery.state = DeliveryState.PENDING
        delivery.finished_at = None
        delivery.next_attempt_at = now
        delivery.save(update_fields=["state", "finished_at", "next_attempt_at", "max_attempts"])
        _enqueue_attempt(delivery=delivery)
        retried += 1
    return retried


def delivery_requeue_overdue(*, grace: timedelta) -> int:
    """Re-enqueue pending deliveries whose attempt should have happened ``grace`` ago.

    A task row can be lost to a worker killed mid-task (it stays "running"); the delivery
    then waits here. Safe to run any time: the claim makes duplicate tasks skip.
    """
    now = timezone.now()
    overdue = Delivery.objects.filter(_due(now - grace)).values_list("pk", flat=True)
    return delivery_retry(delivery_ids=list(overdue))


# --- Retention ------------------------------------------------------------------------------


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
