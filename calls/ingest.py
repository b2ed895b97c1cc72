"""The webhook's writer: deliveries from concurrent requests share one transaction.

Each delivery still gets its own answer only after the transaction holding it commits
(design rule 2). What changes is that a request does not wait for a database thread of
its own: deliveries queue, and a database thread takes everything queued (up to
``MAX_BATCH``) into one transaction (``services.call_events_record``). Under load the
per-commit cost (BEGIN, COMMIT, SQLite's WAL append, a PostgreSQL round trip) is shared
by the batch; with one request at a time a batch is one delivery, as before.

If a batch fails, each of its deliveries is retried alone, so one delivery the database
refuses cannot fail the others; its own request then answers 500.

With ``DB_WORKER_THREADS = 0`` (the in-process tests) every delivery is written alone on
the caller's sync thread, inside the test's transaction.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings

from calls.dbwork import (
    release_pooled_connections,
    run_db_job_holding_connection,
    submit_db_job,
)
from calls.payloads import parse_webhook_for_merge
from calls.services import DeliveryOutcome, IncomingDelivery, call_events_record
from retellhub import metrics

logger = logging.getLogger(__name__)

# Bounds one transaction's size (and how long its row locks are held).
MAX_BATCH = 64


@dataclass(slots=True)
class _Pending:
    delivery: IncomingDelivery
    future: asyncio.Future[DeliveryOutcome]
    loop: asyncio.AbstractEventLoop


class DeliveryWriter:
    """Queues deliveries and writes them in batches on the database threads."""

    def __init__(self) -> None:
        self._queue: deque[_Pending] = deque()
        self._lock = threading.Lock()
        self._draining = 0  # database threads currently taking batches from the queue

    async def store(self, delivery: IncomingDelivery) -> DeliveryOutcome:
        """Store ``delivery``; returns once its transaction has committed, or raises."""
        if settings.DB_WORKER_THREADS == 0:
            outcome: list[DeliveryOutcome] = await sync_to_async(
                call_events_record, thread_sensitive=True
            )(deliveries=[delivery])
            return outcome[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[DeliveryOutcome] = loop.create_future()
        with self._lock:
            self._queue.append(_Pending(delivery, future, loop))
            start_drainer = self._draining < settings.DB_WORKER_THREADS
            if start_drainer:
                self._draining += 1
        if start_drainer:
            submit_db_job(self._drain)
        return await future

    def _next_batch(self) -> list[_Pending]:
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))]
            if not batch:
                self._draining -= 1  # under the lock: store() then starts a new drainer
            return batch

    def _drain(self) -> None:
        """On a database thread: write batches until the queue is empty.

        A pooled PostgreSQL connection is kept from one batch to the next and handed back
        when the queue runs dry.
        """
        try:
            while batch := self._next_batch():
                _write(batch)
        finally:
            release_pooled_connections()


def _write(batch: list[_Pending]) -> None:
    results = write_batch([pending.delivery for pending in batch])
    for pending, result in zip(batch, results, strict=True):
        if isinstance(result, Exception):
            _hand_back(pending, _set_exception, result)  # the request logs it, answers 500
        else:
            _hand_back(pending, _set_result, result)


def write_batch(deliveries: list[IncomingDelivery]) -> list[DeliveryOutcome | Exception]:
    """Store ``deliveries`` in one transaction; each one's outcome, or why it failed.

    If the batch fails, each delivery is written alone, so one the database refuses does
    not fail the others.
    """
    try:
        return list(_record(deliveries))
    except Exception as error:
        if len(deliveries) == 1:
            return [error]
    logger.warning("a batch of %d deliveries failed; writing each alone", len(deliveries))
    return [result for delivery in deliveries for result in write_batch([delivery])]


def _record(deliveries: list[IncomingDelivery]) -> list[DeliveryOutcome]:
    """One transaction for the batch, timed and counted whether it commits or fails."""
    started = time.perf_counter()
    try:
        return run_db_job_holding_connection(call_events_record, deliveries=deliveries)
    finally:
        seconds = time.perf_counter() - started
        metrics.webhook_batch_written(deliveries=len(deliveries), seconds=seconds)


def _hand_back(pending: _Pending, setter: Callable[..., None], value: object) -> None:
    try:
        pending.loop.call_soon_threadsafe(setter, pending.future, value)
    except RuntimeError:  # the server's loop has closed: nobody is waiting any more
        pass


def _set_result(future: asyncio.Future[DeliveryOutcome], outcome: DeliveryOutcome) -> None:
    if not future.done():  # the request may have been cancelled (client gone)
        future.set_result(outcome)


def _set_exception(future: asyncio.Future[DeliveryOutcome], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


writer = DeliveryWriter()


@dataclass(frozen=True, slots=True)
class Stored:
    """A delivery stored, or found stored before: what its answer logs and counts."""

    event: str
    call_id: str
    created: bool  # False for a re-delivery of an event already stored


class NotStored(Exception):
    """The delivery was not stored: its transaction failed or the writer is gone. Answered
    500 with nothing half-written. ``event`` is its event name, where it was read."""

    def __init__(self, message: str, *, event: str | None) -> None:
        super().__init__(message)
        self.event = event


async def store(*, body: bytes, source_ip: str | None, key_fingerprint: str) -> Stored:
    """Parse a verified body and store it with the configured writer. Returns once its
    transaction has committed; raises ``PayloadError`` for a body that is not a usable
    delivery, ``NotStored`` if it was not stored.

    The writer processes parse the body themselves (the server's loop then does not), so
    with them an unusable body is found there.
    """
    if settings.WEBHOOK_WRITER == "process" and settings.DB_WORKER_THREADS > 0:
        from calls.writer_process import writer as process_writer  # it imports this module

        return await process_writer.store(
            body=body, source_ip=source_ip, key_fingerprint=key_fingerprint
        )
    event = parse_webhook_for_merge(body)
    delivery = IncomingDelivery(
        event=event, raw_body=body, source_ip=source_ip, key_fingerprint=key_fingerprint
    )
    try:
        outcome = await writer.store(delivery)
    except Exception as error:
        raise NotStored("the delivery's transaction failed", event=event.event) from error
    return Stored(event=event.event, call_id=event.call_id, created=outcome.created)
