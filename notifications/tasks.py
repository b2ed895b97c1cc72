"""Background tasks, run by django-tasks' database worker (``manage.py db_worker``)."""

from __future__ import annotations

from django_tasks import task

from notifications import services


@task()
def delivery_run(delivery_id: int) -> str:
    """One attempt at one delivery; retries are new tasks scheduled by the service."""
    return services.delivery_attempt(delivery_id=delivery_id)
