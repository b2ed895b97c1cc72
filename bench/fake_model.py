"""A fake OpenAI-compatible chat-completions server that streams server-sent events.

Used by the tests (in a thread: ``FakeModel().start()``) and by ``bench/socket_load.py``
(as a process: ``python -m bench.fake_model --port 8600 --ttft-ms 200 --token-ms 20``).
Standard library only, real HTTP/1.1 on loopback with keep-alive, so the openai SDK's
connection pooling is exercised as in production.

What it streams is chosen per request: the first registered :class:`Script` whose
``match`` occurs in the last user message, else the default answer (``tokens`` words,
the first after ``ttft`` seconds, then one every ``token_interval`` seconds). Scripts are
lists of steps: text, tool calls, pauses, gates the test opens when it wants, an HTTP
error, or a dropped connection.

Every stream is recorded with how it ended, in particular whether the *client* closed it
before it was complete (which is how a cancelled answer must look from the model's side).
``GET /stats`` returns the counts as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.fake_http import ClientClosed, Connection, sse_event

COMPLETED = "completed"
CLIENT_CLOSED = "client_closed"
ERROR_STATUS = "error_status"
DROPPED = "dropped"
STREAMING = "streaming"


# --- scripts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Gate:
    """Wait until the test calls ``FakeModel.open_gate(name)``."""

    name: str


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Fail:
    """Answer with this HTTP status instead of a stream (before any byte of it)."""

    status: int = 500


@dataclass(frozen=True)
class Drop:
    """Close the connection mid-stream, as a crashing upstream would."""


Step = Text | Pause | Gate | ToolCall | Fail | Drop


@dataclass(frozen=True)
class Script:
    match: str
    steps: Sequence[Step]


@dataclass
class StreamRecord:
    index: int
    request: dict[str, Any]
    outcome: str = STREAMING
    chunks_sent: int = 0
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def last_user_message(self) -> str:
        return _last_user_message(self.request)

    def wait_ended(self, timeout: float = 10.0) -> str:
        if not self.ended.wait(timeout):
            raise TimeoutError(f"stream {self.index} still {self.outcome} after {timeout}s")
        return self.outcome


def _last_user_message(request: dict[str, Any]) -> str:
    for message in reversed(request.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def _slim(request: dict[str, Any]) -> dict[str, Any]:
    """What a record needs when nobody will inspect the request: the last user message."""
    return {"messages": [{"role": "user", "content": _last_user_message(request)}]}


class FakeModel:
    """The server. ``start()`` runs it in a daemon thread; ``serve()`` in the current loop."""

    def __init__(
        self,
        *,
        ttft: float = 0.0,
        token_interval: float = 0.0,
        tokens: int = 8,
        host: str = "127.0.0.1",
        port: int = 0,
        keep_requests: bool = True,
    ) -> None:
        self.ttft = ttft
        self.keep_requests = keep_requests
        self.token_interval = token_interval
        self.tokens = tokens
        self.host = host
        self.port = port
        self.scripts: list[Script] = []
        self.streams: list[StreamRecord] = []
        self._gates: dict[str, asyncio.Event] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._handlers: set[asyncio.Task[None]] = set()

    # --- control (thread-safe) ---------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, match: str, *steps: Step) -> None:
        with self._lock:
            self.scripts.append(Script(match, steps))

    def open_gate(self, name: str) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._gate(name).set)

    def stream_for(self, match: str, timeout: float = 10.0) -> StreamRecord:
        """The first stream whose last user message contains ``match`` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for record in self.streams:
                    if match in record.last_user_message:
                        return record
            time.sleep(0.01)
        raise TimeoutError(f"no stream for {match!r} within {timeout}s")

    def stats(self) -> dict[str, int]:
        with self._lock:
            outcomes = [record.outcome for record in self.streams]
        return {
            "started": len(outcomes),
            **{name: outcomes.count(name) for name in (COMPLETED, CLIENT_CLOSED, STREAMING)},
            "other": sum(o in {ERROR_STATUS, DROPPED} for o in outcomes),
        }

    # --- running -----------------------------------------------------------------------

    def start(self) -> FakeModel:
        self._thread = threading.Thread(target=self._run, name="fake-model", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake model did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None:
            shutdown = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                shutdown.result(timeout)
            except TimeoutError:
                # Seen once in CI (a test's teardown, after it had passed): say so rather than
                # fail the test; the thread is a daemon and is stopped below all the same.
                shutdown.cancel()
                warnings.warn(
                    f"fake model: shutdown not finished after {timeout} s "
                    f"({len(self._handlers)} connection handler(s) running)",
                    stacklevel=2,
                )
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._listen())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def serve(self) -> None:
        await self._listen()
        if self._server is None:
            raise RuntimeError("the fake model is not listening")
        async with self._server:
            await self._server.serve_forever()

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    # --- handling ----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            while (request := await connection.read_request()) is not None:
                method, path, _headers, body = request
                if method == "GET" and path == "/stats":
                    await connection.respond(
                        200, json.dumps(self.stats()).encode(), "application/json"
                    )
                elif method == "POST" and path.endswith("/chat/completions"):
                    await self._complete(connection, json.loads(body or b"{}"))
                else:
                    await connection.respond(404, b'{"error": "not found"}', "application/json")
        except (ClientClosed, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _steps_for(self, request: dict[str, Any]) -> Sequence[Step]:
        text = _last_user_message(request)
        with self._lock:
            for script in self.scripts:
                if script.match in text:
                    return script.steps
        words = [Text(f"word{n} ") for n in range(self.tokens)]
        steps: list[Step] = [Pause(self.ttft)]
        for index, word in enumerate(words):
            if index:
                steps.append(Pause(self.token_interval))
            steps.append(word)
        return steps

    async def _complete(self, connection: Connection, request: dict[str, Any]) -> None:
        with self._lock:
            kept = request if self.keep_requests else _slim(request)
            record = StreamRecord(index=next(self._counter), request=kept)
            self.streams.append(record)
        steps = self._steps_for(request)
        try:
            if steps and isinstance(steps[0], Fail):
                record.outcome = ERROR_STATUS
                error = {"error": {"message": "fake upstream failure", "type": "server_error"}}
                await connection.respond(
                    steps[0].status, json.dumps(error).encode(), "application/json"
                )
                return
            await self._stream(connection, record, steps)
        except ClientClosed:
            record.outcome = CLIENT_CLOSED
            raise
        finally:
            record.ended.set()

    async def _stream(
        self, connection: Connection, record: StreamRecord, steps: Sequence[Step]
    ) -> None:
        await connection.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        connection.start_watching()
        chunk_id = f"chatcmpl-fake-{record.index}"
        tool_index = 0
        for step in steps:
            match step:
                case Pause(seconds=seconds):
                    await connection.wait(asyncio.sleep(seconds))
                case Gate(name=name):
                    await connection.wait(self._gate(name).wait())
                case Text(text=text):
                    await connection.write(sse_event(_chunk_doc(chunk_id, {"content": text})))
                    record.chunks_sent += 1
                case ToolCall(name=name, arguments=arguments):
                    delta = _tool_delta(
                        tool_index, f"call_{chunk_id}_{tool_index}", name, arguments
                    )
                    await connection.write(sse_event(_chunk_doc(chunk_id, delta)))
                    tool_index += 1
                case Drop():
                    record.outcome = DROPPED
                    await connection.stop_watching()
                    connection.writer.close()
                    raise ConnectionResetError
        finish = "tool_calls" if tool_index else "stop"
        await connection.write(sse_event(_chunk_doc(chunk_id, {}, finish)))
        await connection.write(sse_event("[DONE]") + b"0\r\n\r\n")
        if await connection.stop_watching():
            raise ClientClosed
        record.outcome = COMPLETED


def _chunk_doc(chunk_id: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _tool_delta(index: int, call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "tool_calls": [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--ttft-ms", type=float, default=200.0, help="time to first token")
    parser.add_argument("--token-ms", type=float, default=20.0, help="spacing of later tokens")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per answer")
    args = parser.parse_args()
    model = FakeModel(
        ttft=args.ttft_ms / 1000,
        token_interval=args.token_ms / 1000,
        tokens=args.tokens,
        host=args.host,
        port=args.port,
        # A benchmark run sends thousands of requests with whole transcripts; keeping them
        # all made this process's garbage collections long enough to show as latency.
        keep_requests=False,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(model.serve())


if __name__ == "__main__":
    main()
