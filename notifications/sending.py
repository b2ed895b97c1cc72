"""One attempt's network part: post to a destination or download a recording.

Runs with no transaction open (a slow receiver must not hold a lock) and never raises for
a failed receiver: the result says what happened, for the attempt's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from notifications import signing, transport
from notifications.destinations import destination_target
from notifications.models import Delivery, DeliveryKind, Recording, recording_upload_to


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: transport.HttpOutcome
    download: transport.Download | None = None
    stored_name: str = ""


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


def delivery_send(delivery: Delivery, *, now: datetime) -> SendResult:
    if delivery.kind == DeliveryKind.RECORDING:
        return _send_recording_download(delivery, now=now)
    return _send_to_destination(delivery, now=now)
