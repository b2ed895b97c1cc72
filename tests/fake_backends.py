"""A tiny Retell backend for the simulator's tests, conformant unless told to break a rule.

The socket side is ``websockets.serve`` on the test's event loop; the webhook side is the
standard library's ``ThreadingHTTPServer`` in a thread. Both listen on 127.0.0.1 only.
Each :class:`Faults` flag breaks exactly one rule of retell-protocol.md.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from calls import signing
from tests import retell

CHUNKS = ("Sure, ", "let me ", "check ", "that.")
CHUNK_GAP = 0.02  # seconds between streamed chunks, so interruptions land mid-answer
STALE_DELAY = 0.3  # the "stale" fault finishes old answers this late, whatever came since


@dataclass(frozen=True)
class Faults:
    no_begin: bool = False
    stale: bool = False
    never_complete: bool = False
    ignore_pings: bool = False
    binary: bool = False
    non_json: bool = False
    accept_bad_signature: bool = False
    accept_stale_signature: bool = False
    accept_malformed: bool = False
    refuse_legacy: bool = False


@dataclass(frozen=True)
class FakeBackend:
    url: str  # webhooks
    socket_url: str  # Retell's llm_websocket_url


# --- socket -------------------------------------------------------------------------------


def _frame(response_id: int, content: str, complete: bool) -> str:
    return json.dumps(
        {
            "response_type": "response",
            "response_id": response_id,
            "content": content,
            "content_complete": complete,
        }
    )


class SocketSide:
    def __init__(self, ws: ServerConnection, faults: Faults) -> None:
        self.ws = ws
        self.faults = faults
        self.answer: asyncio.Task[None] | None = None

    async def run(self) -> None:
        await self.ws.send(
            json.dumps({"response_type": "config", "config": {"auto_reconnect": True}})
        )
        if not self.faults.no_begin:
            await self.ws.send(_frame(0, "Hello, how can I help?", True))
        if self.faults.binary:
            await self.ws.send(b"\x00\x01binary")
        if self.faults.non_json:
            await self.ws.send("this is not JSON {")
        with suppress(ConnectionClosed):
            async for message in self.ws:
                await self.receive(json.loads(message))
        if self.answer is not None:
            self.answer.cancel()

    async def receive(self, document: dict[str, Any]) -> None:
        kind = document["interaction_type"]
        if kind == "ping_pong" and not self.faults.ignore_pings:
            await self.ws.send(
                json.dumps({"response_type": "ping_pong", "timestamp": document["timestamp"]})
            )
        elif kind in ("response_required", "reminder_required"):
            if self.answer is not None and not self.faults.stale:
                self.answer.cancel()
            self.answer = asyncio.create_task(self.stream(document["response_id"]))

    async def stream(self, response_id: int) -> None:
        for index, chunk in enumerate(CHUNKS):
            await self.ws.send(_frame(response_id, chunk, False))
            await asyncio.sleep(STALE_DELAY if self.faults.stale and index == 0 else CHUNK_GAP)
        if not self.faults.never_complete:
            await self.ws.send(_frame(response_id, "", True))


# --- webhooks -----------------------------------------------------------------------------


def webhook_status(body: bytes, header: str | None, faults: Faults) -> int:
    try:
        signing.verify(body=body, header=header, keys=[retell.PRIMARY_KEY], now_ms=retell.now_ms())
    except signing.SignatureError as exc:
        stale = exc.reason == "stale_timestamp"
        if not (faults.accept_stale_signature if stale else faults.accept_bad_signature):
            return 401
    try:
        document = json.loads(body)
    except ValueError:
        return 200 if faults.accept_malformed else 400
    if "call" not in document and faults.refuse_legacy:
        return 400
    return 200


def _handler(faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the simulator's client expects

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = webhook_status(body, self.headers.get(signing.HEADER_NAME), faults)
            reply = b'{"received":true}' if status == 200 else b'{"message":"no"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the simulator reports what happened

    return Handler


@asynccontextmanager
async def fake_backend(faults: Faults = Faults()) -> AsyncIterator[FakeBackend]:
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(faults))
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    async def handler(ws: ServerConnection) -> None:
        await SocketSide(ws, faults).run()

    try:
        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            yield FakeBackend(
                url=f"http://127.0.0.1:{http.server_address[1]}",
                socket_url=f"ws://127.0.0.1:{port}/llm-websocket",
            )
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)
