"""The webhook's writer in a child process: storage off the server's interpreter.

With the writer on a database thread (calls/ingest.py), the server's event loop and the
writer share one interpreter lock, and on the 2-core benchmark machine the server process
topped out at one core: HTTP, signature and parsing on the loop, the batch transaction on
the thread, each waiting for the other's turn. Here the server process hands each
verified delivery's raw bytes to a child process over a socket pair, and the child parses,
stores (the same batches, ``ingest.write_batch``) and answers with each delivery's outcome.
The two run on separate cores and the server's loop has no thread to contend with. The
server does not parse the body itself: the child answers with the event's name and call id
for the server's log and metrics, or says the body is unusable, and only then does the
server parse it, for the 400's message.

What does not change: a request is answered only after its transaction has committed
(design rule 2), a batch that fails is retried one delivery at a time, and a failure
answers 500 with nothing half-written. If the child dies, the requests waiting on it
answer 500 (Retell retries them) and the next delivery starts a new child.

Each server process has its own children (``WEBHOOK_WRITER_PROCESSES``: on PostgreSQL a
second one writes while the first waits on the database), started by its first webhook. A
child exits when its parent closes the socket pair or dies. ``WEBHOOK_WRITER=thread`` keeps
the writer on the database threads instead.

The frames on the socket pair are in calls/writer_frames.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator

from django.conf import settings

from calls import realtime
from calls.ingest import MAX_BATCH, NotStored, Stored, write_batch
from calls.payloads import PayloadError, WebhookEvent, parse_webhook, parse_webhook_for_merge
from calls.services import DeliveryOutcome, IncomingDelivery
from calls.writer_frames import (
    BATCH,
    DUPLICATE,
    FAILED,
    STORED,
    UNUSABLE,
    Request,
    Result,
    decode_requests,
    decode_results,
    encode_request,
    encode_results,
)
from retellhub import metrics

logger = logging.getLogger(__name__)

CHILD_MODULE = "calls.writer_child"


class WriterUnavailable(NotStored):
    """The child process died (or could not start) before answering; answered 500."""

    def __init__(self, message: str) -> None:
        super().__init__(message, event=None)


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
    parsed = [(request, _parsed(request.body)) for request in batch]
    deliveries = [
        IncomingDelivery(
            event=event,
            raw_body=request.body,
            source_ip=request.source_ip,
            key_fingerprint=request.key_fingerprint,
        )
        for request, event in parsed
        if event is not None
    ]
    started = time.perf_counter()
    written = write_batch(deliveries) if deliveries else []  # no transaction for nothing
    seconds = time.perf_counter() - started
    outcomes = iter(written)  # in the order of the usable requests
    results = [
        Result(request.request_id, UNUSABLE, 0, "", "")
        if event is None
        else _result(request, event, next(outcomes))
        for request, event in parsed
    ]
    return encode_results(results, written=len(deliveries), seconds=seconds)


def _result(request: Request, event: WebhookEvent, outcome: DeliveryOutcome | Exception) -> Result:
    if isinstance(outcome, Exception):
        # The parent answers 500 and logs the request; the cause is only known here.
        logger.error("webhook delivery not stored", exc_info=outcome)
        return Result(request.request_id, FAILED, 0, event.event, event.call_id)
    status = STORED if outcome.created else DUPLICATE
    return Result(request.request_id, status, outcome.call.pk, event.event, event.call_id)


def _parsed(body: bytes) -> WebhookEvent | None:
    try:
        return parse_webhook_for_merge(body)
    except PayloadError:
        return None  # the parent parses it again for the 400's message


# --- The server's side ------------------------------------------------------------------

# A child that died before it answered anything is not replaced until this long after: one
# that cannot start (a broken deploy) must not be re-spawned for every delivery.
RESTART_AFTER_SECONDS = 1.0


class WriterFailed(NotStored):
    """The child could not store this delivery (it logged why); answered 500."""


class _Unusable(Exception):
    """The child found the body unusable (not a delivery): the parent parses it for why."""


class ProcessWriter:
    """The server process's handles on its children (``WEBHOOK_WRITER_PROCESSES``): started
    by the first delivery, and again after one died; bound to the event loop that started
    them. Each delivery goes to the child with the fewest waiting."""

    def __init__(self) -> None:
        self._children: list[_Child] = []

    async def store(self, *, body: bytes, source_ip: str | None, key_fingerprint: str) -> Stored:
        """Parse and store a verified body, as ``ingest.store`` (which calls this)."""
        child = self._least_busy_child()
        try:
            return await child.store(
                body=body, source_ip=source_ip, key_fingerprint=key_fingerprint
            )
        except _Unusable:
            parse_webhook(body)  # raises PayloadError with what is wrong
            raise WriterFailed(
                "the writer refused a body this process can read", event=None
            ) from None

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
        self._pending: dict[int, asyncio.Future[Stored]] = {}
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

    async def store(self, *, body: bytes, source_ip: str | None, key_fingerprint: str) -> Stored:
        self._in_flight += 1
        try:
            await asyncio.shield(self._ready)
            if self.closed or self._stream is None:
                raise WriterUnavailable("the webhook writer process is gone")
            self._next_id = (self._next_id + 1) % 2**32
            request_id = self._next_id
            future: asyncio.Future[Stored] = self.loop.create_future()
            self._pending[request_id] = future
            self._stream.write(
                encode_request(
                    request_id, body=body, source_ip=source_ip, key_fingerprint=key_fingerprint
                )
            )
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
                written, seconds, size = BATCH.unpack(await reader.readexactly(BATCH.size))
                if written:
                    metrics.webhook_batch_written(deliveries=written, seconds=seconds)
                data = await reader.readexactly(size)
                self._answered = True
                self._settle(decode_results(data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self._gone()

    def _settle(self, results: Iterator[Result]) -> None:
        stored = []
        for r in results:
            future = self._pending.pop(r.request_id, None)
            if future is None or future.done():  # the request was cancelled (client gone)
                continue
            if r.status == FAILED:
                future.set_exception(
                    WriterFailed("the webhook writer could not store it", event=r.event)
                )
            elif r.status == UNUSABLE:
                future.set_exception(_Unusable())
            else:
                future.set_result(Stored(r.event, r.call_id, created=r.status == STORED))
                stored.append(r.call_pk)
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
        # Its statements all find rows by a unique key; see retellhub/databases.py.
        "DATABASE_INDEX_SCANS_ONLY": "true",
    }


writer = ProcessWriter()
