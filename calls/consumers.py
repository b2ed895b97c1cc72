"""Channels consumers. Each is a thin shell: the work happens in calls/llm/."""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings

from calls.live_presence import presence
from calls.llm.access import socket_refusal
from calls.llm.session import CallSession, SessionOptions
from calls.realtime import (
    CALLS_GROUP,
    call_group,
    call_snapshot,
    live_snapshot,
    publish_on_this_loop,
)
from retellhub import metrics

logger = logging.getLogger(__name__)

# What a socket that ended without a close frame reports (RFC 6455 7.1.5).
ABNORMAL_CLOSURE = 1006


class LLMSocketConsumer(AsyncWebsocketConsumer):
    """Retell's Custom LLM WebSocket for one call: ``/llm-websocket/<call_id>``."""

    session: CallSession | None = None
    close_sent = False
    # No channel layer: the socket talks only to Retell, and with Redis unreachable
    # Channels' listener on the layer would kill every call socket (an unknown alias
    # makes get_channel_layer return None).
    channel_layer_alias = "none"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Channels runs disconnect() only for a websocket.disconnect it has read; if the
            # dispatch loop ends any other way, the session is still closed and recorded.
            await self._end_session(ABNORMAL_CLOSURE)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels' own dispatch first closes stale database connections, a hop through
        # the one thread that runs sync code, before *every* frame. Pings would queue
        # behind other calls' database work; this consumer touches the database only in
        # its own tasks (which clean up after themselves), so it skips that hop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        call_id = self.scope["url_route"]["kwargs"]["call_id"]
        refusal = socket_refusal(
            self.scope,
            token=settings.LLM_SOCKET_TOKEN,
            allowed_ips=settings.LLM_SOCKET_ALLOWED_IPS,
            trusted_proxies=settings.TRUSTED_PROXY_COUNT,
        )
        if refusal:
            logger.warning("llm socket refused: %s", refusal, extra={"call_id": call_id})
            await self.close()  # before accept: the handshake is answered 403
            return
        await self.accept()
        self.session = CallSession(
            call_id=call_id,
            send_text=self._send_text,
            close_socket=self._close_socket,
            options=SessionOptions.from_settings(),
        )
        metrics.llm_socket_opened()
        await self.session.start()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        if text_data is not None:
            await self.session.receive_text(text_data)
        else:
            self.session.receive_binary()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' own also closes stale database connections afterwards, through the one
        # thread that runs sync code (behind other requests' work); this consumer has no
        # channel-layer groups and no database connection of its own (see dispatch).
        await self.disconnect(message["code"])
        raise StopConsumer

    async def disconnect(self, code: int) -> None:
        await self._end_session(code)

    async def _end_session(self, code: int) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.shutdown(close_code=code)
            metrics.llm_socket_closed()

    async def _send_text(self, text: str) -> None:
        await self._send_or_drop({"type": "websocket.send", "text": text})

    async def _close_socket(self, code: int) -> None:
        await self._send_or_drop({"type": "websocket.close", "code": code})
        # Nothing may follow a close (uvicorn raises RuntimeError): a pong for a ping already
        # queued behind it is dropped too.
        self.close_sent = True

    async def _send_or_drop(self, message: dict[str, Any]) -> None:
        if self.close_sent:
            return
        # A frame sent after the client has gone is dropped, as daphne does. uvicorn raises
        # instead (ClientDisconnected, an OSError, as ASGI 2.4 asks; uvicorn PR #2218) once
        # it has queued websocket.disconnect; raised from a handler (a pong), it would end
        # Channels' dispatch loop before that message is read, and disconnect() would never
        # run (django/channels#1466).
        try:
            await self.base_send(message)
        except OSError:
            logger.debug("llm socket: frame dropped, the client has gone")


class LiveCallsConsumer(AsyncJsonWebsocketConsumer):
    """The live monitor's socket, for signed-in staff: ``/ws/calls/`` (every call) and
    ``/ws/calls/<call_id>/`` (one call). A snapshot on connect, then ``call.update``
    messages from calls/realtime.py, each a call's whole state to replace, not append."""

    group: str = ""
    counted = False  # among the open sockets calls/live_presence.py counts

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not (user.is_active and user.is_staff):
            await self.close()  # before accept: the handshake is answered 403
            return
        call_id = self.scope["url_route"]["kwargs"].get("call_id")
        self.group = call_group(call_id) if call_id else CALLS_GROUP
        # Join before reading the snapshot: a write committed in between then arrives as
        # an update after it, and the page keeps whichever version is newer.
        await self.channel_layer.group_add(self.group, self.channel_name)
        publish_on_this_loop()
        # Before the snapshot too: writers in other processes start sending from here on.
        self.counted = True  # counted as soon as socket_opened starts, even if cancelled
        await presence.socket_opened()
        await self.accept()
        if call_id:
            snapshot = await database_sync_to_async(call_snapshot)(call_id=call_id)
        else:
            snapshot = await database_sync_to_async(live_snapshot)()
        await self.send_json(snapshot)

    async def disconnect(self, code: int) -> None:
        if self.counted:
            self.counted = False
            presence.socket_closed()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def send_json(self, content: Any, close: bool = False) -> None:
        # As on the call socket: an update for a viewer who has gone is dropped, so the
        # websocket.disconnect uvicorn has queued is still read and the group left.
        with suppress(OSError):
            await super().send_json(content, close=close)

    async def call_update(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "call", "call": message["call"]})
