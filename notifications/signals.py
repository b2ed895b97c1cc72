"""Receivers for rows that change outside the services.

Recording files leave storage when their row does, however it is deleted. A signal
rather than a service because rows also go by cascade (a pruned or admin-deleted call).
The file is removed only after commit, so a rolled-back deletion keeps it.

Any save or delete of a destination (admin, API, environment sync) forgets the webhook's
"no destinations" memo (notifications.destinations._EmptyTableMemo).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from notifications.destinations import destinations_empty
from notifications.models import Destination, Recording


@receiver(post_delete, sender=Recording)
def recording_file_delete(sender: type[Recording], instance: Recording, **kwargs: Any) -> None:
    if instance.file.name:
        storage, name = instance.file.storage, instance.file.name
        transaction.on_commit(lambda: storage.delete(name))


@receiver(post_save, sender=Destination)
@receiver(post_delete, sender=Destination)
def destinations_changed(sender: type[Destination], **kwargs: Any) -> None:
    destinations_empty.forget()
    transaction.on_commit(destinations_empty.forget)
