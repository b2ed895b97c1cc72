"""Database work for requests, on long-lived threads that keep their connections.

Under ASGI, Django runs each request's sync code on a fresh thread, so every request opens
and closes its own database connection: for SQLite that set-up, and the WAL checkpoint
each time the last connection closes, cost about 1.6 ms of CPU per webhook. The webhook
instead hands its one transaction to this small pool, whose threads keep their connection
between jobs and drop it only after an error, as Django's request cycle would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connections

R = TypeVar("R")


class LazyThreadPool:
    """A named thread pool created on first use, so its size is read from settings then
    rather than at import; ``reset`` shuts it down (for tests that change the size)."""

    def __init__(self, prefix: str, size: Callable[[], int]) -> None:
        self._prefix = prefix
        self._size = size
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    def get(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._size(), thread_name_prefix=self._prefix
                )
            return self._executor

    def reset(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


db_threads = LazyThreadPool("retellhub-db", lambda: settings.DB_WORKER_THREADS)


def _drop_broken_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        # A job that failed mid-transaction, or a connection the server dropped, must not
        # poison the next job on this thread.
        if connection.in_atomic_block or (
            connection.errors_occurred and not connection.is_usable()
        ):
            connection.close()
        connection.errors_occurred = False


def release_pooled_connections() -> None:
    """Hand this thread's pooled PostgreSQL connections back to their pool.

    After a job, or a run of jobs: taking a connection again is cheap, and the pool, not an
    idle thread, then owns it.
    """
    for connection in connections.all(initialized_only=True):
        if getattr(connection, "pool", None) is not None:
            connection.close()


def run_db_job(fn: Callable[..., R], /, **kwargs: Any) -> R:
    """Run ``fn(**kwargs)`` here, on a database thread, as one job: a connection left
    broken is dropped and a pooled one goes back to its pool afterwards."""
    try:
        return run_db_job_holding_connection(fn, **kwargs)
    finally:
        release_pooled_connections()


def run_db_job_holding_connection(fn: Callable[..., R], /, **kwargs: Any) -> R:
    """``run_db_job``, except that a pooled connection stays with this thread for the next
    job; the caller hands it back with ``release_pooled_connections`` when the run ends.

    For jobs back to back (the webhook's batches under load): taking a connection from the
    pool costs a round trip to check it (``conn_health_checks``) and Django's set-up.
    """
    _drop_broken_connections()
    try:
        return fn(**kwargs)
    finally:
        _drop_broken_connections()


async def arun_db_job(threads: LazyThreadPool, fn: Callable[..., R], /, **kwargs: Any) -> R:
    """``fn(**kwargs)`` as one job on one of ``threads``, awaited without blocking the loop.

    With ``DB_WORKER_THREADS = 0`` (the in-process tests, whose transaction a pool thread
    could not see) it runs on a worker thread of Channels' instead.
    """
    if settings.DB_WORKER_THREADS == 0:
        return await database_sync_to_async(fn, thread_sensitive=False)(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(threads.get(), partial(run_db_job, fn, **kwargs))


def submit_db_job(fn: Callable[[], None]) -> None:
    """Start ``fn()`` on a database thread without waiting for it (it must not raise)."""
    db_threads.get().submit(fn)


def run_db_sync(fn: Callable[..., R], /, **kwargs: Any) -> R:
    """Run ``fn(**kwargs)`` on a database thread and wait for it.

    With ``DB_WORKER_THREADS = 0`` it runs on the caller's thread instead; tests that wrap
    each case in a transaction need that, since a pool thread's connection cannot see (or
    wait out) the test's uncommitted transaction.
    """
    if settings.DB_WORKER_THREADS == 0:
        return fn(**kwargs)
    return db_threads.get().submit(partial(run_db_job, fn, **kwargs)).result()
