"""``manage.py outbox_requeue``: re-enqueue deliveries whose task was lost.

A worker killed mid-task leaves its task row "running" forever and the delivery waiting.
This finds pending deliveries overdue by more than ``--grace-minutes`` and enqueues a
fresh task for each; a delivery that still has a live task is not sent twice (see the
claim in notifications/attempts.py). Safe from cron and at every start (`make run`).
"""

from __future__ import annotations

from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand

from notifications.actions import delivery_requeue_overdue


class Command(BaseCommand):
    help = "Re-enqueue pending deliveries whose attempt is overdue (a lost task)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--grace-minutes", type=int, default=10)

    def handle(self, *args: Any, grace_minutes: int, **options: Any) -> None:
        count = delivery_requeue_overdue(grace=timedelta(minutes=grace_minutes))
        self.stdout.write(f"Re-enqueued {count} overdue delivery(ies).")
