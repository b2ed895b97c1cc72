"""Recording files leave storage when their row does, however it is deleted.

A signal rather than a service because rows also go by cascade (a pruned or
admin-deleted call). The file is removed only after commit, so a rolled-back
deletion keeps it.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from notifications.models import Recording


@receiver(post_delete, sender=Recording)
def recording_file_delete(sender: type[Recording], instance: Recording, **kwargs: Any) -> None:
    if instance.file.name:
        storage, name = instance.file.storage, instance.file.name
        transaction.on_commit(lambda: storage.delete(name))
