"""The socket's database reads, on threads of their own that keep their connection.

Channels' ``database_sync_to_async`` closes the thread's connection before and after each
call, so every read opened a new one: on SQLite that cost about 0.9 ms of CPU per read, two
reads per call while it is greeted, while the event loop that answers every call waited for
the GIL. These threads keep their connection between reads (calls/dbwork.py's
``run_db_job`` drops a broken one and hands a pooled PostgreSQL one back), and are not the
database threads that writes queue on: a read never waits behind a write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

from calls.dbwork import LazyThreadPool, run_db_job

T = TypeVar("T")
READ_THREADS = 2

read_threads = LazyThreadPool("retellhub-read", lambda: READ_THREADS)


async def aread(function: Callable[..., T], /, **kwargs: Any) -> T:
    """``function(**kwargs)`` on a read thread, awaited without blocking the loop."""
    if settings.DB_WORKER_THREADS == 0:
        # The in-process tests: their transaction is visible only to Django's own threads.
        return await database_sync_to_async(function, thread_sensitive=False)(**kwargs)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(read_threads.get(), partial(run_db_job, function, **kwargs))
