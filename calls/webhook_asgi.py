"""``POST /webhook`` under ASGI, answered without Django's request cycle.

Retell's webhook is the one endpoint whose throughput matters, and most of its cost was
not the delivery's own work: on the 2-core benchmark machine Django's request cycle
(handler, nine middleware, DRF, three thread hand-offs) took about 3 ms of CPU per
request, more than storing the delivery. This endpoint does exactly what the DRF view
does, with the same functions (calls/webhook.py): host check, source address, size,
signature, then the writer (calls/ingest.py), which parses the body and shares
transactions between concurrent deliveries. Answers, headers, logs and metrics are the same.

``retellhub/asgi.py`` routes ``/webhook`` here unless ``WEBHOOK_FAST_PATH`` is off or
HTTPS redirection is on (the one middleware behaviour this does not reproduce); the DRF
view then answers, as it does under WSGI.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from calls import ingest, signing, webhook
from calls.payloads import PayloadError
from retellhub import fastjson, metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# What Django's middleware adds to the view's answers (SecurityMiddleware,
# XFrameOptionsMiddleware) and DRF's Allow header.
STATIC_HEADERS = [
    (b"content-type", b"application/json"),
    (b"allow", b"POST, OPTIONS"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
SIGNATURE_HEADER = signing.HEADER_NAME.lower().encode("latin-1")
BAD_HOST = webhook.Reply(400, {"message": "Invalid Host header."})


class ClientGone(Exception):
    """The client disconnected before its body arrived: there is nobody to answer."""


def fast_path_enabled() -> bool:
    return bool(settings.WEBHOOK_FAST_PATH) and not settings.SECURE_SSL_REDIRECT


async def webhook_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI application for ``/webhook``."""
    started = time.perf_counter()
    try:
        reply = await _answer(scope, receive)
    except ClientGone:
        return
    body = fastjson.dumps(reply.document)
    headers = [*STATIC_HEADERS, (b"content-length", str(len(body)).encode("ascii"))]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    metrics.request_answered(
        view="webhook",
        method=scope["method"],
        status=reply.status,
        seconds=time.perf_counter() - started,
    )


async def _answer(scope: Scope, receive: Receive) -> webhook.Reply:
    headers = _headers(scope)
    if not _host_allowed(headers.get(b"host"), scope):
        return BAD_HOST
    if scope["method"] != "POST":
        return webhook.METHOD_NOT_ALLOWED
    try:
        delivery = await _verified_delivery(scope, receive, headers)
    except webhook.Rejected as exc:
        return webhook.rejected_reply(exc)
    try:
        stored = await ingest.store(
            body=delivery.body,
            source_ip=delivery.source_ip,
            key_fingerprint=delivery.match.key_fingerprint,
        )
    except PayloadError as exc:
        return webhook.rejected_reply(webhook.unusable(exc, source_ip=delivery.source_ip))
    except Exception as exc:  # ingest.NotStored, or anything unforeseen: 500 all the same
        return webhook.failed_reply(exc.event if isinstance(exc, ingest.NotStored) else None)
    return webhook.stored_reply(event=stored.event, call_id=stored.call_id, created=stored.created)


async def _verified_delivery(
    scope: Scope, receive: Receive, headers: dict[bytes, str]
) -> webhook.VerifiedDelivery:
    """Source address, size and signature, in that order (as ``webhook.verify_delivery``)."""
    client = scope.get("client")
    source_ip = webhook.admit_source(
        {
            "REMOTE_ADDR": client[0] if client else "",
            "HTTP_X_FORWARDED_FOR": headers.get(b"x-forwarded-for", ""),
        }
    )
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    webhook.check_declared_length(headers.get(b"content-length"), limit=limit)
    body = await _read_body(receive, limit=limit)
    match = webhook.verify_signature(
        body=body, header=headers.get(SIGNATURE_HEADER), source_ip=source_ip
    )
    return webhook.VerifiedDelivery(body=body, source_ip=source_ip, match=match)


async def _read_body(receive: Receive, *, limit: int) -> bytes:
    """The whole body, refused as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise webhook.too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[bytes, str]:
    # ASGI header names are lower-case bytes; a repeated header keeps its last value, as
    # Django's request.headers does for these.
    return {name: value.decode("latin-1") for name, value in scope["headers"]}


def _host_allowed(host: str | None, scope: Scope) -> bool:
    """Django's ALLOWED_HOSTS check, as ``HttpRequest.get_host`` makes it."""
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else ""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return _host_matches(host, tuple(allowed))


@lru_cache(maxsize=256)
def _host_matches(host: str, allowed: tuple[str, ...]) -> bool:
    # Retell sends the same Host on every delivery: checked once, not per request.
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)
