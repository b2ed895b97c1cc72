"""Idle keep-alive connections, per origin and per event loop."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from contextlib import suppress
from functools import partial

from calls.llm.upstream.connection import Connection
from calls.llm.upstream.origin import Origin, split_url

# Idle connections kept per origin; more are opened when more answers stream at once.
MAX_IDLE_PER_ORIGIN = 256


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
