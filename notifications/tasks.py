"""Background tasks, run by django-tasks' database worker (``manage.py db_worker``)."""

from __future__ import annotations

from django_tasks import task

from notifications.attempts import delivery_attempt


@task()
def delivery_run(delivery_id: int) -> str:
    """One attempt at one delivery; retries are new tasks (notifications/attempts.py)."""
    return delivery_attempt(delivery_id=delivery_id)
