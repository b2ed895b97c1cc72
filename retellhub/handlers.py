"""Django's ASGI handler for HTTP, with each request's sync thread reused, not recreated."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

# Idle request threads kept for the next requests; more run at once when needed.
IDLE_REQUEST_THREADS = 64


class RequestThreads:
    """Single-thread executors handed to one request at a time.

    Each request's sync code (middleware, view, ORM) must run on one thread of its own:
    Django's thread-sensitive mode. Django's handler starts a new executor per request
    and, once the request ends, a second thread to join it: two thread starts for every
    request, about a fifth of a webhook's CPU on the 2-core benchmark machine. These
    executors outlive their request and serve the next.
    """

    def __init__(self, *, keep: int) -> None:
        self._keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def take(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="retellhub-request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    @property
    def idle(self) -> int:
        return len(self._idle)


class PooledASGIHandler(ASGIHandler):
    """``django.core.handlers.asgi.ASGIHandler`` drawing its request threads from a pool.

    asgiref's ``ThreadSensitiveContext(executor=...)`` is the documented way to give a
    context its executor; the caller owns it, so it is not shut down on exit. A request
    cancelled by a client disconnect still leaves its context only after its sync code
    has finished (Django awaits it), so the executor is idle when it goes back.
    """

    threads = RequestThreads(keep=IDLE_REQUEST_THREADS)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor)


def get_pooled_asgi_application() -> PooledASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with the pooled handler."""
    import django

    django.setup(set_prefix=False)
    return PooledASGIHandler()
