"""A webhook delivery's admission and answers, shared by its two transports.

Django's DRF view (calls/views.py) serves ``POST /webhook`` under WSGI and Django's test
client; under ASGI a lean endpoint (calls/webhook_asgi.py) answers it without Django's
request cycle. Both check the source address, the size and Retell's signature in that
order, with the functions here, and answer with the same statuses, documents, logs and
metrics.

The body is read before anything parses it: the HMAC covers the bytes exactly as sent,
and re-serialised JSON would not verify (retell-protocol.md A.5).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from calls import signing
from calls.net import client_ip, ip_allowed
from calls.payloads import PayloadError, WebhookEvent, parse_webhook
from calls.services import IncomingDelivery
from retellhub import metrics

logger = logging.getLogger(__name__)


class Rejected(Exception):
    """A delivery refused before storage, with the status and message the caller gets.

    ``reason`` is a short machine-readable name for metrics (signing.SignatureError's
    reasons, or forbidden, too_large, bad_payload, bad_host).
    """

    def __init__(self, status: int, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    body: bytes
    source_ip: str | None
    match: signing.SignatureMatch


@dataclass(frozen=True, slots=True)
class Reply:
    """What the webhook answers: a status and its JSON document."""

    status: int
    document: dict[str, object]


RECEIVED = Reply(200, {"received": True})
SERVER_ERROR = Reply(500, {"message": "Internal Server Error"})
METHOD_NOT_ALLOWED = Reply(405, {"message": "Method Not Allowed"})


# --- Admission, step by step (both transports call these) ---------------------------------


def admit_source(meta: Mapping[str, Any]) -> str | None:
    """The caller's address (WSGI-style ``meta``), refused with 403 if not allowed."""
    source_ip = client_ip(meta, trusted_proxies=settings.TRUSTED_PROXY_COUNT)
    if not ip_allowed(source_ip, settings.WEBHOOK_ALLOWED_IPS):
        logger.warning("webhook refused: address not allowed", extra={"source_ip": source_ip})
        raise Rejected(403, "Forbidden", reason="forbidden")
    return source_ip


def too_large(limit: int) -> Rejected:
    return Rejected(413, f"Body exceeds {limit} bytes.", reason="too_large")


def check_declared_length(value: str | None, *, limit: int) -> None:
    """Refuse a declared Content-Length over ``limit`` before the body is read."""
    try:
        declared = int(value or 0)
    except ValueError:
        raise Rejected(400, "Invalid Content-Length header.", reason="bad_payload") from None
    if declared > limit:
        raise too_large(limit)


def verify_signature(
    *, body: bytes, header: str | None, source_ip: str | None
) -> signing.SignatureMatch:
    try:
        return signing.verify(
            body=body,
            header=header,
            keys=settings.RETELL_API_KEYS,
            now_ms=int(time.time() * 1000),
        )
    except signing.SignatureError as exc:
        logger.warning(
            "webhook refused: %s", exc.reason, extra={"reason": exc.reason, "source_ip": source_ip}
        )
        raise Rejected(401, "Unauthorized", reason=exc.reason) from None


def incoming(delivery: VerifiedDelivery, event: WebhookEvent) -> IncomingDelivery:
    """What the writer stores of a verified, parsed delivery."""
    return IncomingDelivery(
        event=event,
        raw_body=delivery.body,
        source_ip=delivery.source_ip,
        key_fingerprint=delivery.match.key_fingerprint,
    )


def parse_delivery(delivery: VerifiedDelivery) -> WebhookEvent:
    """The verified body as an event, or 400 with what is wrong with it."""
    try:
        return parse_webhook(delivery.body)
    except PayloadError as exc:
        raise unusable(exc, source_ip=delivery.source_ip) from None


def unusable(exc: PayloadError, *, source_ip: str | None) -> Rejected:
    """A signed body that is not a usable delivery: logged, answered 400 with why."""
    logger.warning("webhook unusable: %s", exc, extra={"source_ip": source_ip})
    return Rejected(400, str(exc), reason="bad_payload")


# --- Django's request ------------------------------------------------------------------------


def read_limited_body(request: HttpRequest, *, limit: int) -> bytes:
    """The raw body, refusing anything over ``limit`` bytes.

    A declared Content-Length over the limit is refused before the body is touched; a body
    without one is read at most one byte past the limit.
    """
    check_declared_length(request.META.get("CONTENT_LENGTH"), limit=limit)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large(limit)
    return body


def verify_delivery(request: HttpRequest) -> VerifiedDelivery:
    """Check the source address, the size and the signature, in that order."""
    source_ip = admit_source(request.META)
    body = read_limited_body(request, limit=settings.WEBHOOK_MAX_BODY_BYTES)
    match = verify_signature(
        body=body, header=request.headers.get(signing.HEADER_NAME), source_ip=source_ip
    )
    return VerifiedDelivery(body=body, source_ip=source_ip, match=match)


# --- Outcomes: the same metrics, logs and answers for both transports ----------------------


def rejected_reply(exc: Rejected) -> Reply:
    metrics.webhook_delivery(event=None, outcome=exc.reason)
    return Reply(exc.status, {"message": exc.message})


def stored_reply(*, event: str, call_id: str, created: bool) -> Reply:
    result = "stored" if created else "duplicate"
    metrics.webhook_delivery(event=event, outcome=result)
    logger.info("webhook %s %s for call %s", result, event, call_id)
    return RECEIVED


def failed_reply(event: str | None) -> Reply:
    """After a failed transaction (call from the ``except`` block: the traceback is logged).
    ``event`` is the delivery's event name, None where it was not read.

    It rolled back: nothing is half-written, and Retell's retry can succeed once the fault
    is gone.
    """
    logger.exception("webhook failed; answering 500 so Retell retries")
    metrics.webhook_delivery(event=event, outcome="error")
    return SERVER_ERROR
