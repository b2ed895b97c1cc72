"""The webhook's only authentication: Retell's signature over the exact raw body."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from calls import signing
from calls.net import client_ip, ip_allowed

logger = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "Payload Too Large"
    default_code = "payload_too_large"


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
        raise exceptions.ParseError("Invalid Content-Length header.") from None
    if declared > limit:
        raise PayloadTooLarge(f"Body exceeds {limit} bytes.")
    body = request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLarge(f"Body exceeds {limit} bytes.")
    return body


class RetellSignatureAuthentication(BaseAuthentication):
    """Checks the source address, the size and the signature, in that order.

    The body is read here, before any parser could touch it: the HMAC covers the bytes
    exactly as sent, and re-serialised JSON would not verify (retell-protocol.md A.5).
    """

    def authenticate(self, request: Request) -> tuple[AnonymousUser, VerifiedDelivery]:
        django_request = request._request
        source_ip = client_ip(django_request.META, trusted_proxies=settings.TRUSTED_PROXY_COUNT)
        if not ip_allowed(source_ip, settings.WEBHOOK_ALLOWED_IPS):
            logger.warning("webhook refused: address not allowed", extra={"source_ip": source_ip})
            raise exceptions.PermissionDenied()
        body = read_limited_body(django_request, limit=settings.WEBHOOK_MAX_BODY_BYTES)
        try:
            match = signing.verify(
                body=body,
                header=django_request.headers.get(signing.HEADER_NAME),
                keys=settings.RETELL_API_KEYS,
                now_ms=int(time.time() * 1000),
            )
        except signing.SignatureError as exc:
            logger.warning(
                "webhook refused: %s",
                exc.reason,
                extra={"reason": exc.reason, "source_ip": source_ip},
            )
            raise exceptions.AuthenticationFailed(exc.reason) from None
        return AnonymousUser(), VerifiedDelivery(body=body, source_ip=source_ip, match=match)

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 rather than 403 when the signature fails.
        return signing.HEADER_NAME
