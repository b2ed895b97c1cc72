from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from rest_framework import exceptions, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls.authentication import PayloadTooLarge, RetellSignatureAuthentication, VerifiedDelivery
from calls.payloads import PayloadError, parse_webhook
from calls.services import call_event_record

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0


class AlwaysJSON(BaseContentNegotiation):
    """Retell sends whatever Accept header it likes; the answer is JSON regardless."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


def _message(code: int, message: str) -> Response:
    return Response({"message": message}, status=code)


def webhook_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The webhook's error contract: a JSON ``message`` and a status Retell acts on.

    Anything unexpected is a 500 so that Retell retries; the transaction has rolled back,
    so the retry starts from a clean slate.
    """
    if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
        return _message(status.HTTP_401_UNAUTHORIZED, "Unauthorized")
    if isinstance(exc, exceptions.PermissionDenied):
        return _message(status.HTTP_403_FORBIDDEN, "Forbidden")
    if isinstance(exc, PayloadTooLarge | exceptions.ParseError):
        return _message(exc.status_code, str(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return _message(status.HTTP_405_METHOD_NOT_ALLOWED, "Method Not Allowed")
    logger.exception("webhook failed; answering 500 so Retell retries", exc_info=exc)
    return _message(status.HTTP_500_INTERNAL_SERVER_ERROR, "Internal Server Error")


class WebhookView(APIView):
    """``POST /webhook``: Retell's signed call events."""

    authentication_classes = [RetellSignatureAuthentication]
    permission_classes: list[Any] = []
    parser_classes: list[Any] = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJSON
    throttle_classes: list[Any] = []

    def get_exception_handler(self) -> Any:
        return webhook_exception_handler

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # DRF authenticates before it looks at the method; a GET should learn it is the
        # wrong method, not that it is unsigned.
        if request.method != "POST":
            raise exceptions.MethodNotAllowed(request.method or "")
        super().initial(request, *args, **kwargs)

    def post(self, request: Request) -> Response:
        delivery = request.auth
        assert isinstance(delivery, VerifiedDelivery)  # noqa: S101 - set by the authenticator
        try:
            event = parse_webhook(delivery.body)
        except PayloadError as exc:
            logger.warning("webhook unusable: %s", exc, extra={"source_ip": delivery.source_ip})
            raise exceptions.ParseError(str(exc)) from None
        outcome = call_event_record(
            event=event,
            raw_body=delivery.body,
            source_ip=delivery.source_ip,
            key_fingerprint=delivery.match.key_fingerprint,
        )
        logger.info(
            "webhook %s %s for call %s",
            "stored" if outcome.created else "duplicate",
            event.event,
            event.call_id,
        )
        return Response({"received": True})


@require_GET
def ping(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. Touches nothing else."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone() == (1,)


async def _channel_layer_ok() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.check"})
    message = await layer.receive(channel)
    return bool(message.get("type") == "health.check")


async def _check(probe: Any) -> str:
    try:
        ok = await asyncio.wait_for(probe, timeout=HEALTH_TIMEOUT_SECONDS)
    except Exception:
        logger.warning("health check failed", exc_info=True)
        return "down"
    return "ok" if ok else "down"


async def health(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the channel layer both answer, else 503."""
    if request.method != "GET":
        return JsonResponse({"message": "Method Not Allowed"}, status=405)
    checks = {
        "database": await _check(sync_to_async(_database_ok)()),
        "channel_layer": await _check(_channel_layer_ok()),
    }
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
