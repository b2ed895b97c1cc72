"""Admission of a webhook delivery: source address, size and Retell's signature.

The body is read here, before anything parses it: the HMAC covers the bytes exactly as
sent, and re-serialised JSON would not verify (retell-protocol.md A.5).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.http import HttpRequest

from calls import signing
from calls.net import client_ip, ip_allowed

logger = logging.getLogger(__name__)


class Rejected(Exception):
    """A delivery refused before storage, with the status and message the caller gets.

    ``reason`` is a short machine-readable name for metrics (signing.SignatureError's
    reasons, or forbidden, too_large, bad_payload).
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


def read_limited_body(request: HttpRequest, *, limit: int) -> bytes:
    """The raw body, refusing anything over ``limit`` bytes.

    A declared Content-Length over the limit is refused before the body is touched; a body
    without one is read at most one byte past the limit.
    """
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise Rejected(400, "Invalid Content-Length header.", reason="bad_payload") from None
    too_large = Rejected(413, f"Body exceeds {limit} bytes.", reason="too_large")
    if declared > limit:
        raise too_large
    body = request.read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body


def verify_delivery(request: HttpRequest) -> VerifiedDelivery:
    """Check the source address, the size and the signature, in that order."""
    source_ip = client_ip(request.META, trusted_proxies=settings.TRUSTED_PROXY_COUNT)
    if not ip_allowed(source_ip, settings.WEBHOOK_ALLOWED_IPS):
        logger.warning("webhook refused: address not allowed", extra={"source_ip": source_ip})
        raise Rejected(403, "Forbidden", reason="forbidden")
    body = read_limited_body(request, limit=settings.WEBHOOK_MAX_BODY_BYTES)
    try:
        match = signing.verify(
            body=body,
            header=request.headers.get(signing.HEADER_NAME),
            keys=settings.RETELL_API_KEYS,
            now_ms=int(time.time() * 1000),
        )
    except signing.SignatureError as exc:
        logger.warning(
            "webhook refused: %s", exc.reason, extra={"reason": exc.reason, "source_ip": source_ip}
        )
        raise Rejected(401, "Unauthorized", reason=exc.reason) from None
    return VerifiedDelivery(body=body, source_ip=source_ip, match=match)
