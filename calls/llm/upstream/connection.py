"""One HTTP/1.1 connection as an ``asyncio.Protocol``: it parses each response as bytes
arrive (chunked, length- or close-delimited) into the data of its server-sent events."""

from __future__ import annotations

import asyncio
from enum import Enum, auto

from calls.llm.upstream.errors import ConnectionDropped, UpstreamError
from calls.llm.upstream.sse import EventStream

# Events parsed but not yet taken by the answer: past this the socket stops being read.
MAX_QUEUED_EVENTS = 256
MAX_HEAD_BYTES = 64 * 1024
ERROR_BODY_BYTES = 2048


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
        self._sse = EventStream()
        self.events = self._sse.events
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
                self._failure = ConnectionDropped("connection closed before the response")
            else:
                self._failure = UpstreamError("connection closed mid-response")
        self._wake()

    # --- request / response ------------------------------------------------------------

    def send(self, request: bytes) -> None:
        if self.transport is None:
            raise ConnectionDropped("not connected")
        self._reset()
        self.used = True
        self.transport.write(request)

    def _reset(self) -> None:
        self._buffer.clear()
        self._state = _Body.HEAD
        self._received_any = False
        self.status = 0
        self._error_body.clear()
        self._sse.reset()
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
        self._sse.feed(data)
        if self._sse.errored:
            self._fail(UpstreamError("the stream reported an error event"))


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
