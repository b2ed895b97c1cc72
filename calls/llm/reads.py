"""The socket's database reads, on threads of their own that keep their connection.

Channels' ``database_sync_to_async`` closes the thread's connection before and after each
call, so every read opened a new one: on SQLite that cost about 0.9 ms of CPU per read, two
reads per call while it is greeted, while the event loop that answers every call waited for
the GIL. These threads keep their connection between reads (calls/dbwork.py's
``run_db_job`` drops a broken one and hands a pooled PostgreSQL one back), and are not the
database threads that writes queue on: a read never waits behind a write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from calls.dbwork import LazyThreadPool, arun_db_job

T = TypeVar("T")
READ_THREADS = 2

read_threads = LazyThreadPool("retellhub-read", lambda: READ_THREADS)


async def aread(function: Callable[..., T], /, **kwargs: Any) -> T:
    """``function(**kwargs)`` on a read thread, awaited without blocking the loop."""
    return await arun_db_job(read_threads, function, **kwargs)
