"""A small HTTP/1.1 client for one job: POST a JSON body, read back server-sent events.

Why not the openai SDK over httpx: every layer of that stack (the SDK's request building
and auth wrappers, httpx, httpcore, anyio, h11, the SDK's SSE decoder) runs on the event
loop that also answers every call's pings and streams every other call's answer. Measured
on the 2-core benchmark machine: ~3.2 ms of CPU per 20-token answer, about 45% of the
socket server's CPU at 100 calls. This client does the same work in a fraction of that:
one ``asyncio.Protocol`` per connection parses the response as bytes arrive, and the
answer's task is woken once per event.

What it supports is what chat-completion endpoints use: ``http``/``https`` (one shared TLS
context), keep-alive connections pooled per origin and event loop, chunked or
length-delimited or close-delimited bodies, no compression (it asks for ``identity``).
Anything else (a redirect, an error status) raises :class:`UpstreamError`. A stream that
is left early (a newer request cancelled the answer) closes its connection, which is how
the endpoint learns to stop generating.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum, auto
from functools import partial
from urllib.parse import urlsplit

# Idle connections kept per origin; more are opened when more answers stream at once.
MAX_IDLE_PER_ORIGIN = 256
# Events parsed but not yet taken by the answer: past this the socket stops being read.
MAX_QUEUED_EVENTS = 256
MAX_HEAD_BYTES = 64 * 1024
ERROR_BODY_BYTES = 2048


class UpstreamError(Exception):
    """The endpoint's answer is unusable; ``str()`` is safe to log (no transcript in it)."""


class UpstreamStatusError(UpstreamError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _ConnectionDropped(UpstreamError):
    """Closed before any byte of the response arrived: a pooled connection that the server
    had closed while idle. Safe to retry once on a fresh connection."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """``https://host[:port]/path?query`` -> (origin, ``/path?query``)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UpstreamError(f"unsupported URL scheme or host: {parts.scheme!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), path


class _Body(Enum):
    HEAD = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    CHUNK_TRAILER = auto()
    LENGTH = auto()
    UNTIL_CLOSE = auto()
    DONE = auto()


class Connection(asyncio.Protocol):
    """One connection to an origin; parses one response at a time into SSE event payloads."""

    def __init__(self) -> None:
        # Each step consumes what it can of the buffer; False means it needs more bytes.
        self._steps = {
            _Body.HEAD: self._parse_head,
            _Body.CHUNK_SIZE: self._parse_chunk_size,
            _Body.CHUNK_DATA: self._parse_chunk_data,
            _Body.CHUNK_TRAILER: self._parse_trailer,
            _Body.LENGTH: self._parse_length,
            _Body.UNTIL_CLOSE: self._parse_until_close,
        }
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.reused = False
        self.used = False  # a request was sent on it
        self._buffer = bytearray()
        self._state = _Body.HEAD
        self._remaining = 0
        self._keep_alive = True
        self._received_any = False
        self.status = 0
        self._error_body = bytearray()
        self._sse = bytearray()
        self._data_lines: list[bytes] = []
        self._event_name = b""
        self.events: deque[bytes] = deque()
        # The stream's own end marker was read: only the body's framing may still follow.
        self.finished = False
        self._paused = False
        self._failure: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        self._buffer += data
        try:
            self._parse()
        except UpstreamError as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()
        if len(self.events) > MAX_QUEUED_EVENTS and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost does the rest

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._state is _Body.UNTIL_CLOSE:
            self._finish_body()
        elif self._state is not _Body.DONE and self._failure is None:
            if not self._received_any:
                self._failure = _ConnectionDropped("connection closed before the response")
            else:
                self._failure = UpstreamError("connection closed mid-response")
        self._wake()

    # --- request / response ------------------------------------------------------------

    def send(self, request: bytes) -> None:
        if self.transport is None:
            raise _ConnectionDropped("not connected")
        self._reset()
        self.used = True
        self.transport.write(request)

    def _reset(self) -> None:
        self._buffer.clear()
        self._state = _Body.HEAD
        self._received_any = False
        self.status = 0
        self._error_body.clear()
        self._sse.clear()
        self._data_lines = []
        self._event_name = b""
        self.events.clear()
        self.finished = False
        self._failure = None

    @property
    def complete(self) -> bool:
        return self._state is _Body.DONE

    @property
    def reusable(self) -> bool:
        ready = self.complete or not self.used
        return ready and self._keep_alive and not self.lost and self._failure is None

    @property
    def parkable(self) -> bool:
        """Reusable, or will be once the last bytes of a finished stream arrive (endpoints
        often send the end of the chunked body a moment after the stream's end marker)."""
        return self.reusable or (
            self.finished and self._keep_alive and not self.lost and self._failure is None
        )

    async def next_event(self) -> bytes | None:
        """The next event's data, or ``None`` once the response has ended."""
        while True:
            if self.events:
                event = self.events.popleft()
                if self._paused and len(self.events) < MAX_QUEUED_EVENTS // 2:
                    self._paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                return event
            if self._failure is not None:
                raise self._failure
            if self._state is _Body.DONE:
                return None
            await self._wait()

    async def wait_head(self) -> int:
        while self._state is _Body.HEAD:
            if self._failure is not None:
                raise self._failure
            await self._wait()
        return self.status

    async def read_error_body(self) -> bytes:
        while self._state is not _Body.DONE and self._failure is None:
            if len(self._error_body) >= ERROR_BODY_BYTES:
                break
            await self._wait()
        return bytes(self._error_body[:ERROR_BODY_BYTES])

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc

    # --- parsing -----------------------------------------------------------------------

    def _parse(self) -> None:
        while self._buffer and self._state is not _Body.DONE:
            if not self._steps[self._state]():
                return

    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise UpstreamError("response head too large")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, status = _status(status_line)
        if 100 <= status < 200:
            return True  # an interim response (100 Continue); the real one follows
        headers = _headers(lines)
        self.status = status
        connection = headers.get("connection", "").lower()
        self._keep_alive = (
            "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        )
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _Body.CHUNK_SIZE
        elif "content-length" in headers:
            self._remaining = _content_length(headers["content-length"])
            self._state = _Body.LENGTH if self._remaining else _Body.DONE
        else:
            self._keep_alive = False
            self._state = _Body.UNTIL_CLOSE
        return True

    def _parse_chunk_size(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return False
        size_text = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
        del self._buffer[: end + 2]
        try:
            self._remaining = int(size_text, 16)
        except ValueError:
            raise UpstreamError("bad chunk size") from None
        self._state = _Body.CHUNK_DATA if self._remaining else _Body.CHUNK_TRAILER
        return True

    def _parse_chunk_data(self) -> bool:
        if self._remaining:
            taken = bytes(self._buffer[: self._remaining])
            del self._buffer[: len(taken)]
            self._remaining -= len(taken)
            self._body(taken)
            if self._remaining:
                return False
        if len(self._buffer) < 2:
            return False
        del self._buffer[:2]  # the CRLF after the chunk's data
        self._state = _Body.CHUNK_SIZE
        return True

    def _parse_trailer(self) -> bool:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return False
        del self._buffer[: end + 2]
        if end == 0:  # the empty line that ends the trailer section
            self._finish_body()
        return True

    def _parse_length(self) -> bool:
        taken = bytes(self._buffer[: self._remaining])
        del self._buffer[: len(taken)]
        self._remaining -= len(taken)
        self._body(taken)
        if not self._remaining:
            self._finish_body()
        return True

    def _parse_until_close(self) -> bool:
        taken = bytes(self._buffer)
        self._buffer.clear()
        self._body(taken)
        return True

    def _finish_body(self) -> None:
        self._state = _Body.DONE
        if self._buffer:
            self._keep_alive = False  # bytes after the response: do not trust the connection
        self._body(b"\n\n")  # an event the stream left unterminated still counts

    def _body(self, data: bytes) -> None:
        if self.status >= 300:
            self._error_body += data[: max(ERROR_BODY_BYTES - len(self._error_body), 0)]
            return
        self._sse += data
        start = 0
        while (end := self._sse.find(b"\n", start)) >= 0:
            self._sse_line(bytes(self._sse[start:end]).rstrip(b"\r"))
            start = end + 1
        del self._sse[:start]

    def _sse_line(self, line: bytes) -> None:
        """One line of the text/event-stream format (HTML's server-sent events)."""
        if not line:
            if self._data_lines:
                if self._event_name == b"error":
                    self._fail(UpstreamError("the stream reported an error event"))
                self.events.append(b"\n".join(self._data_lines))
            self._data_lines = []
            self._event_name = b""
            return
        if line.startswith(b":"):
            return  # a comment, e.g. a keep-alive
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data_lines.append(value)
        elif name == b"event":
            self._event_name = value


def _status(line: str) -> tuple[str, int]:
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise UpstreamError("not an HTTP/1.x response")
    return version, int(code)


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _content_length(value: str) -> int:
    try:
        length = int(value.split(",")[0].strip())
    except ValueError:
        raise UpstreamError("bad content-length") from None
    if length < 0:
        raise UpstreamError("bad content-length")
    return length


# --- pool --------------------------------------------------------------------------------


class Pool:
    """Idle keep-alive connections per origin, for one event loop."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self._tls = tls
        self._idle: dict[Origin, list[Connection]] = {}
        self._warming: dict[Origin, asyncio.Task[Connection]] = {}

    def warm(self, origin: Origin) -> None:
        """Open a connection now for a request expected soon (a call being greeted), unless
        one is idle or being opened: the connect (and TLS handshake) then happens before
        the caller speaks, not after. At most one extra connection per origin."""
        if self._idle.get(origin) or origin in self._warming:
            return
        task = asyncio.ensure_future(self._connect(origin))
        self._warming[origin] = task
        task.add_done_callback(partial(self._warmed, origin))

    def _warmed(self, origin: Origin, task: asyncio.Task[Connection]) -> None:
        del self._warming[origin]
        if not task.cancelled() and task.exception() is None:
            self.release(origin, task.result())
        # A failed warm-up is not reported: the request itself will connect, or fail, later.

    async def acquire(self, origin: Origin, *, fresh: bool = False) -> Connection:
        idle = self._idle.get(origin)
        while idle and not fresh:
            connection = idle.pop()
            transport = connection.transport
            if connection.reusable and transport is not None and not transport.is_closing():
                connection.reused = True
                return connection
            if transport is not None:
                transport.close()  # closed by the server, or its last response never ended
        return await self._connect(origin)

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if origin.scheme == "https":
            tls = self._tls or ssl.create_default_context()
        _transport, connection = await loop.create_connection(
            Connection,
            origin.host,
            origin.port,
            ssl=tls,
            server_hostname=origin.host if tls else None,
        )
        return connection

    def release(self, origin: Origin, connection: Connection) -> None:
        """Keep the connection for the next request if its response ended cleanly; close it
        otherwise (an abandoned stream: closing is what tells the endpoint to stop)."""
        idle = self._idle.setdefault(origin, [])
        if connection.parkable and len(idle) < MAX_IDLE_PER_ORIGIN:
            idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                if connection.transport is not None:
                    connection.transport.close()
        self._idle.clear()


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def pool_for_loop(tls: ssl.SSLContext | None) -> Pool:
    """This event loop's pool: pooled connections cannot cross event loops."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        pool = _pools[loop] = Pool(tls)
    return pool


def warm(url: str, *, tls: ssl.SSLContext | None = None) -> None:
    """Have a connection to ``url``'s origin ready in this event loop's pool (if any)."""
    origin, _ = split_url(url)
    with suppress(RuntimeError):  # no running loop: nothing to keep it in
        pool_for_loop(tls).warm(origin)


def request_bytes(origin: Origin, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {origin.host_header}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Accept: text/event-stream",
        "Accept-Encoding: identity",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def post_events(
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    tls: ssl.SSLContext | None = None,
    last_event: bytes | None = None,
) -> AsyncGenerator[bytes, None]:
    """POST ``body`` to ``url`` and yield the data of each server-sent event, up to the
    response's end or an event starting with ``last_event`` (not yielded).

    Closing the generator early (or cancelling its consumer) closes the connection.
    """
    origin, path = split_url(url)
    pool = pool_for_loop(tls)
    request = request_bytes(origin, path, headers, body)
    connection = await _send_with_one_retry(pool, origin, request)
    try:
        status = await connection.wait_head()
        if not 200 <= status < 300:
            await connection.read_error_body()
            raise UpstreamStatusError(status)
        while (event := await connection.next_event()) is not None:
            if last_event is not None and event.startswith(last_event):
                connection.finished = True
                return
            yield event
    finally:
        # An abandoned response (cancelled answer, error) is not reusable: release closes it.
        pool.release(origin, connection)


async def _send_with_one_retry(pool: Pool, origin: Origin, request: bytes) -> Connection:
    connection = await pool.acquire(origin)
    connection.send(request)
    if not connection.reused:
        return connection
    try:
        await connection.wait_head()
    except _ConnectionDropped:
        # The server closed the idle connection as we reused it; nothing was processed.
        connection = await pool.acquire(origin, fresh=True)
        connection.send(request)
    except BaseException:
        pool.release(origin, connection)
        raise
    return connection
