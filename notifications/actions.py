"""What operators do to deliveries: send again now, or recover those whose task was lost."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications.models import Delivery, DeliveryState
from notifications.queue import delivery_due, delivery_enqueue_attempt


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
        delivery_enqueue_attempt(delivery=delivery)
        retried += 1
    return retried


def delivery_requeue_overdue(*, grace: timedelta) -> int:
    """Re-enqueue pending deliveries whose attempt should have happened ``grace`` ago.

    A task row can be lost to a worker killed mid-task (it stays "running"); the delivery
    then waits here. Safe to run any time: the claim makes duplicate tasks skip.
    """
    now = timezone.now()
    overdue = Delivery.objects.filter(delivery_due(now - grace)).values_list("pk", flat=True)
    return delivery_retry(delivery_ids=list(overdue))
