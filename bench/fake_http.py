"""The fake model's HTTP/1.1 side (bench/fake_model.py): one keep-alive connection that
reads requests, writes chunked server-sent events, and notices a client that hangs up
mid-stream. Standard library only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any


class ClientClosed(Exception):
    pass


class Connection:
    """One keep-alive client connection; watches for the client hanging up mid-stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.watcher: asyncio.Task[bytes] | None = None

    async def read_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        while b"\r\n\r\n" not in self.buffer:
            data = await self.reader.read(65536)
            if not data:
                return None
            self.buffer += data
        head, _, rest = bytes(self.buffer).partition(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        while len(rest) < length:
            data = await self.reader.read(65536)
            if not data:
                return None
            rest += data
        self.buffer = bytearray(rest[length:])
        return method, path, headers, rest[:length]

    def start_watching(self) -> None:
        # The client sends nothing while it reads a stream, so a read that returns means
        # it hung up (EOF) — the signal a cancelled answer must produce.
        self.watcher = asyncio.ensure_future(self.reader.read(65536))
        # A reset is how a cancelled answer often looks; _hung_up reads it, or nobody
        # does (the stream ended first): either way not worth a "never retrieved" report.
        self.watcher.add_done_callback(_retrieve)

    async def stop_watching(self) -> bool:
        """Stop the watcher; True when the client had closed the connection."""
        watcher, self.watcher = self.watcher, None
        if watcher is None:
            return False
        if not watcher.done():
            watcher.cancel()  # a cancelled StreamReader.read loses no data
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            return False
        if _hung_up(watcher):
            return True
        self.buffer += watcher.result()
        return False

    async def wait(self, awaitable: Any) -> None:
        """Await ``awaitable`` unless the client hangs up first."""
        task = asyncio.ensure_future(awaitable)
        watcher = self.watcher
        waiting = {task} if watcher is None else {task, watcher}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if watcher is not None and _hung_up(watcher):
            task.cancel()
            raise ClientClosed
        await task

    async def write(self, data: bytes) -> None:
        if self.watcher is not None and _hung_up(self.watcher):
            raise ClientClosed
        self.writer.write(data)
        try:
            await self.writer.drain()
        except ConnectionError:
            raise ClientClosed from None

    async def respond(self, status: int, body: bytes, content_type: str) -> None:
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await self.write(head.encode() + body)


def _retrieve(task: asyncio.Future[bytes]) -> None:
    if not task.cancelled():
        task.exception()


def _hung_up(watcher: asyncio.Task[bytes]) -> bool:
    """Whether the watcher saw the client go: EOF, or a reset (closing a socket that still
    has unread data sends RST instead of FIN)."""
    if not watcher.done() or watcher.cancelled():
        return False
    if watcher.exception() is not None:
        return isinstance(watcher.exception(), ConnectionError)
    return watcher.result() == b""


def chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def sse_event(document: dict[str, Any] | str) -> bytes:
    data = document if isinstance(document, str) else json.dumps(document)
    return chunk(f"data: {data}\n\n".encode())
