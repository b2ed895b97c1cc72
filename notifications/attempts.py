"""One attempt at one delivery, in the worker: claim, send, record, then finish or retry.

Only the claim and the finish hold a transaction; the send between them holds none.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.models import Delivery, DeliveryAttempt, DeliveryKind, DeliveryState, Recording
from notifications.queue import delivery_due, delivery_enqueue_attempt
from notifications.sending import SendResult, delivery_send

logger = logging.getLogger(__name__)

# How long a claimed attempt may run before another worker may take the delivery over.
CLAIM_LEASE = timedelta(minutes=5)


def backoff_delay(*, attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failure: base, 2 x base, 4 x base, ... capped."""
    seconds = settings.OUTBOX_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.OUTBOX_BACKOFF_MAX_SECONDS))


@transaction.atomic
def _delivery_claim(*, delivery_id: int, now: datetime) -> Delivery | None:
    """Take the delivery for one attempt, or None if it is not due or someone has it."""
    delivery = (
        # of=self: PostgreSQL cannot lock the nullable side of the destination join.
        Delivery.objects.select_for_update(of=("self",))
        .select_related("destination", "call")
        .filter(delivery_due(now), pk=delivery_id)
        .first()
    )
    if delivery is None:
        return None
    delivery.attempts += 1
    delivery.locked_until = now + CLAIM_LEASE
    delivery.last_attempt_at = now
    delivery.save(update_fields=["attempts", "locked_until", "last_attempt_at"])
    return delivery


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
    delivery_enqueue_attempt(delivery=delivery, run_after=delivery.next_attempt_at)


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
    result = delivery_send(delivery, now=started)
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
