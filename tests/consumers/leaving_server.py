"""A server that behaves like uvicorn once the client has gone."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import REGISTRY

from retellhub.asgi import application
from tests.llm_socket import CALL_ID


class LeavingServer:
    """A server's side of one socket that, like uvicorn, raises on a send once the client
    has gone (ASGI 2.4 allows it: ``ClientDisconnected``, an ``OSError``) and queues
    ``websocket.disconnect`` for the application to read."""

    def __init__(self, path: str = f"/llm-websocket/{CALL_ID}", app: Any = application) -> None:
        self.app = app
        self.inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames: list[dict[str, Any]] = []
        self.opened = asyncio.Event()  # the begin message (or any frame on other sockets)
        self.refused = asyncio.Event()  # a send after the client had gone
        self.gone = False
        self.closed = False
        self.read_before_close: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {
            "type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [], "subprotocols": [], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }  # fmt: skip

    def run(self) -> asyncio.Task[None]:
        self.inbound.put_nowait({"type": "websocket.connect"})
        return asyncio.create_task(self.app(self.scope, self.inbound.get, self.send))

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            self.refused.set()
            raise OSError("client disconnected")
        if self.closed:
            raise RuntimeError(f"Unexpected ASGI message {message['type']!r} after a close")
        if message["type"] == "websocket.close":
            self.closed = True
            for frame in self.read_before_close:  # arrived just before, not yet read
                self.client_sent(frame)
            self.inbound.put_nowait({"type": "websocket.disconnect", "code": message["code"]})
        if message["type"] == "websocket.send":
            self.frames.append(json.loads(message["text"]))
            if self.frames[-1].get("response_id", 0) == 0:
                self.opened.set()

    def client_sent(self, document: dict[str, Any]) -> None:
        self.inbound.put_nowait({"type": "websocket.receive", "text": json.dumps(document)})


def sockets_open() -> float | None:
    return REGISTRY.get_sample_value("retellhub_llm_sockets_open")
