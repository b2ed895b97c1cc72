"""A delivery's place in the task queue: when it is due, and the task for its next attempt."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from notifications.models import Delivery, DeliveryState


def delivery_due(now: datetime) -> Q:
    """Pending deliveries whose attempt may start at ``now``: time has come, no live claim."""
    return Q(state=DeliveryState.PENDING, next_attempt_at__lte=now) & (
        Q(locked_until__isnull=True) | Q(locked_until__lte=now)
    )


def delivery_enqueue_attempt(*, delivery: Delivery, run_after: datetime | None = None) -> None:
    # Imported here: the task module imports the attempt code, which enqueues retries.
    from notifications.tasks import delivery_run

    task = delivery_run.using(run_after=run_after) if run_after else delivery_run
    task.enqueue(delivery.pk)
