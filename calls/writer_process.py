"""The webhook's writer in a child process: storage off the server's interpreter.

With the writer on a database thread (calls/ingest.py), the server's event loop and the
writer share one interpreter lock, and on the 2-core benchmark machine the server process
topped out at one core: HTTP, signature and parsing on the loop, the batch transaction on
the thread, each waiting for the other's turn. Here the server process hands each
verified delivery's raw bytes to a child process over a socket pair, and the child parses,
stores (the same batches, ``ingest.write_batch``) and answers with each delivery's outcome.
The two run on separate cores and the server's loop has no thread to contend with.

What does not change: a request is answered only after its transaction has committed
(design rule 2), a batch that fails is retried one delivery at a time, and a failure
answers 500 with nothing half-written. If the child dies, the requests waiting on it
answer 500 (Retell retries them) and the next delivery starts a new child.

Each server process has its own children (``WEBHOOK_WRITER_PROCESSES``: on PostgreSQL a
second one writes while the first waits on the database), started by its first webhook. A
child exits when its parent closes the socket pair or dies. ``WEBHOOK_WRITER=thread`` keeps
the writer on the database threads instead.

Frames on the socket pair (network byte order):

- to the child, one per delivery: ``REQUEST`` (request id, body length, metadata length),
  the metadata (source address and key fingerprint, UTF-8, newline-separated), the body;
- to the parent, one per batch: ``BATCH`` (deliveries, seconds the transaction took), then
  a ``RESULT`` per delivery (request id, outcome, the call's primary key).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings

from calls import realtime
from calls.ingest import write_batch
from calls.payloads import parse_webhook
from calls.services import IncomingDelivery
from retellhub import metrics

logger = logging.getLogger(__name__)

REQUEST = struct.Struct("!IIH")
BATCH = struct.Struct("!Id")
RESULT = struct.Struct("!IBq")
DUPLICATE, STORED, FAILED = 0, 1, 2
MAX_BATCH = 64  # as calls/ingest.py
CHILD_MODULE = "calls.writer_child"


class WriterUnavailable(Exception):
    """The child process died (or could not start) before answering; answered 500."""


# --- Frames -----------------------------------------------------------------------------


def encode_request(request_id: int, delivery: IncomingDelivery) -> bytes:
    meta = f"{delivery.source_ip or ''}\n{delivery.key_fingerprint}".encode()
    head = REQUEST.pack(request_id, len(delivery.raw_body), len(meta))
    return b"".join((head, meta, delivery.raw_body))


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    source_ip: str | None
    key_fingerprint: str
    body: bytes


def decode_requests(buffer: bytearray, *, limit: int) -> Iterator[Request]:
    """The complete requests at the start of ``buffer`` (at most ``limit``), removed from it
    as they are read; an incomplete last one stays for more bytes."""
    taken = 0
    while taken < limit and len(buffer) >= REQUEST.size:
        request_id, body_length, meta_length = REQUEST.unpack_from(buffer)
        end = REQUEST.size + meta_length + body_length
        if len(buffer) < end:
            return
        meta = bytes(buffer[REQUEST.size : REQUEST.size + meta_length]).decode()
        body = bytes(buffer[REQUEST.size + meta_length : end])
        del buffer[:end]
        source_ip, key_fingerprint = meta.split("\n", 1)
        taken += 1
        yield Request(request_id, source_ip or None, key_fingerprint, body)


def encode_results(results: list[tuple[int, int, int]], *, seconds: float) -> bytes:
    return BATCH.pack(len(results), seconds) + b"".join(RESULT.pack(*r) for r in results)


# --- The child --------------------------------------------------------------------------


def child_main(fd: int) -> None:
    """The child's whole life (calls/writer_child.py starts it once Django is set up):
    batches in, outcomes out, until the parent is gone."""
    with socket.socket(fileno=fd) as connection:
        buffer = bytearray()
        while batch := _next_batch(connection, buffer):
            connection.sendall(_write(batch))


def _next_batch(connection: socket.socket, buffer: bytearray) -> list[Request]:
    """Whatever complete requests have arrived (waiting for one); [] once the parent is gone."""
    while True:
        batch = list(decode_requests(buffer, limit=MAX_BATCH))
        if batch:
            return batch
        chunk = connection.recv(1 << 16)
        if not chunk:
            return []
        buffer += chunk


def _write(batch: list[Request]) -> bytes:
    started = time.perf_counter()
    deliveries = [
        IncomingDelivery(
            event=parse_webhook(request.body),  # the parent has parsed it: it parses
            raw_body=request.body,
            source_ip=request.source_ip,
            key_fingerprint=request.key_fingerprint,
        )
        for request in batch
    ]
    results = []
    for request, outcome in zip(batch, write_batch(deliveries), strict=True):
        if isinstance(outcome, Exception):
            # The parent answers 500 and logs the request; the cause is only known here.
            logger.error("webhook delivery not stored", exc_info=outcome)
            results.append((request.request_id, FAILED, 0))
        else:
            status = STORED if outcome.created else DUPLICATE
            results.append((request.request_id, status, outcome.call.pk))
    return encode_results(results, seconds=time.perf_counter() - started)


# --- The server's side ------------------------------------------------------------------

# A child that died before it answered anything is not replaced until this long after: one
# that cannot start (a broken deploy) must not be re-spawned for every delivery.
RESTART_AFTER_SECONDS = 1.0


class WriterFailed(Exception):
    """The child could not store this delivery (it logged why); answered 500."""


class ProcessWriter:
    """The server process's handles on its children (``WEBHOOK_WRITER_PROCESSES``): started
    by the first delivery, and again after one died; bound to the event loop that started
    them. Each delivery goes to the child with the fewest waiting."""

    def __init__(self) -> None:
        self._children: list[_Child] = []

    async def store(self, delivery: IncomingDelivery) -> bool:
        """Store ``delivery``; True if it was new, False for a re-delivery. Returns once its
        transaction has committed; raises if it did not."""
        return await self._least_busy_child().store(delivery)

    def _least_busy_child(self) -> _Child:
        loop = asyncio.get_running_loop()
        running = [c for c in self._children if not c.closed and c.loop is loop]
        if len(running) < max(1, settings.WEBHOOK_WRITER_PROCESSES):
            running = self._replace_missing(loop)
            if not running:
                raise WriterUnavailable("the webhook writer process keeps dying; see its log")
        return min(running, key=_Child.waiting)

    def _replace_missing(self, loop: asyncio.AbstractEventLoop) -> list[_Child]:
        """Start children for those that died (or belong to an earlier loop: a server
        restarted in the same process); the running ones."""
        kept = [c for c in self._children if c.loop is loop]
        kept = [_Child(loop) if c.closed and not c.failed_to_start() else c for c in kept]
        wanted = max(1, settings.WEBHOOK_WRITER_PROCESSES)
        self._children = kept + [_Child(loop) for _ in range(wanted - len(kept))]
        return [child for child in self._children if not child.closed]

    async def aclose(self) -> None:
        """Stop the children (each exits once its socket closes) and wait for them."""
        children, self._children = self._children, []
        for child in children:
            await child.aclose()


class _Child:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.closed = False
        self._pending: dict[int, asyncio.Future[bool]] = {}
        self._next_id = 0
        self._in_flight = 0
        self._answered = False
        self._closing = False  # aclose: the exit that follows is not a failure
        self._died_at: float | None = None
        self._stream: asyncio.StreamWriter | None = None
        self._ready = loop.create_task(self._started())

    def waiting(self) -> int:
        """Deliveries handed to this child and not yet answered."""
        return self._in_flight

    def failed_to_start(self) -> bool:
        """Died without ever answering, less than ``RESTART_AFTER_SECONDS`` ago."""
        died = self._died_at
        recently = died is not None and time.monotonic() - died < RESTART_AFTER_SECONDS
        return recently and not self._answered

    async def store(self, delivery: IncomingDelivery) -> bool:
        self._in_flight += 1
        try:
            await asyncio.shield(self._ready)
            if self.closed or self._stream is None:
                raise WriterUnavailable("the webhook writer process is gone")
            self._next_id = (self._next_id + 1) % 2**32
            request_id = self._next_id
            future: asyncio.Future[bool] = self.loop.create_future()
            self._pending[request_id] = future
            self._stream.write(encode_request(request_id, delivery))
            return await future
        finally:
            self._in_flight -= 1

    async def _started(self) -> None:
        try:
            await self._start()
        except Exception:
            metrics.webhook_writer_exited()
            self.closed = True
            self._died_at = time.monotonic()
            logger.exception("the webhook writer process could not be started")
            raise

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                CHILD_MODULE,
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                env=_child_environment(),
            )
        reader, self._stream = await asyncio.open_unix_connection(sock=ours)
        self._reading = self.loop.create_task(self._read_results(reader))

    async def _read_results(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                count, seconds = BATCH.unpack(await reader.readexactly(BATCH.size))
                metrics.webhook_batch_written(deliveries=count, seconds=seconds)
                data = await reader.readexactly(count * RESULT.size)
                self._answered = True
                self._settle([RESULT.unpack_from(data, n * RESULT.size) for n in range(count)])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self._gone()

    def _settle(self, results: list[tuple[int, int, int]]) -> None:
        stored = []
        for request_id, status, call_pk in results:
            future = self._pending.pop(request_id, None)
            if future is None or future.done():  # the request was cancelled (client gone)
                continue
            if status == FAILED:
                future.set_exception(WriterFailed("the webhook writer could not store it"))
            else:
                future.set_result(status == STORED)
                stored.append(call_pk)
        if stored:
            realtime.calls_written_elsewhere(pks=stored)

    async def _gone(self) -> None:
        if not self._closing:
            metrics.webhook_writer_exited()
        self.closed = True
        self._died_at = time.monotonic()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WriterUnavailable("the webhook writer process died"))
        if self._stream is not None:
            self._stream.close()
        code = await self._process.wait()
        if pending or code:
            logger.error(
                "webhook writer process exited (code %s); %d deliveries answered 500",
                code,
                len(pending),
            )

    async def aclose(self) -> None:
        self._closing = True
        try:
            await self._ready
        except Exception:
            return
        if self._stream is not None:
            self._stream.close()
        await self._reading


def _child_environment() -> dict[str, str]:
    # The project root importable whatever directory the server was started from; and a
    # small connection pool: the child writes on one connection at a time.
    root = str(settings.BASE_DIR)
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root,
        "DATABASE_POOL_MIN_SIZE": "1",
        "DATABASE_POOL_MAX_SIZE": "2",
    }


writer = ProcessWriter()
