from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from calls import webhook
from calls.dbwork import run_db_sync
from calls.services import call_events_record

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 2.0


class AlwaysJSON(BaseContentNegotiation):
    """Answer with the first renderer whatever the Accept header says."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        return renderers[0], renderers[0].media_type


def _message(status: int, message: str) -> JsonResponse:
    return JsonResponse({"message": message}, status=status)


def _webhook_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, exceptions.MethodNotAllowed):
        reply = webhook.METHOD_NOT_ALLOWED
        return Response(reply.document, status=reply.status)
    return None  # anything else is a bug in this view: Django's 500 handling applies


class WebhookView(APIView):
    """``POST /webhook``: Retell's signed call events.

    Authenticated by its signature alone (calls/webhook.py), which covers the raw bytes, so
    no DRF authenticator or parser touches the request first. Sync on purpose: Django runs
    a sync view and its middleware in one thread hop, where an async view pays a hop per
    middleware. The one transaction goes to a long-lived database thread
    (calls/dbwork.py). Retell acts on the status: 2xx stored, 4xx will not improve on
    retry, 5xx is retried.
    """

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    parser_classes: list[Any] = []
    throttle_classes: list[Any] = []
    renderer_classes = [JSONRenderer]
    content_negotiation_class = AlwaysJSON

    def get_exception_handler(self) -> Any:
        return _webhook_exception_handler

    def post(self, request: Request) -> Response:
        reply = self._answer(request._request)
        return Response(reply.document, status=reply.status)

    @staticmethod
    def _answer(request: HttpRequest) -> webhook.Reply:
        try:
            delivery = webhook.verify_delivery(request)
            event = webhook.parse_delivery(delivery)
        except webhook.Rejected as exc:
            return webhook.rejected_reply(exc)
        try:
            [outcome] = run_db_sync(
                call_events_record, deliveries=[webhook.incoming(delivery, event)]
            )
        except Exception:
            return webhook.failed_reply(event.event)
        return webhook.stored_reply(
            event=event.event, call_id=event.call_id, created=outcome.created
        )


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


async def _check(probe: Awaitable[bool]) -> str:
    try:
        ok = await asyncio.wait_for(probe, timeout=HEALTH_TIMEOUT_SECONDS)
    except Exception:
        logger.warning("health check failed", exc_info=True)
        return "down"
    return "ok" if ok else "down"


async def health(request: HttpRequest) -> JsonResponse:
    """Readiness: the database and the channel layer both answer, else 503."""
    if request.method != "GET":
        return _message(405, "Method Not Allowed")
    checks = {
        "database": await _check(sync_to_async(_database_ok)()),
        "channel_layer": await _check(_channel_layer_ok()),
    }
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
