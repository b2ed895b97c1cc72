"""Whether anyone has the live monitor open, so that writers skip updates nobody receives.

Every committed webhook or transcript write offers the call to the live monitor
(calls/realtime.py), which reads the committed row back, builds the call's state twice
(list and page) and sends both over the channel layer. With Redis (the production set-up)
a writer cannot see other processes' sockets, so it did all of it on every write: on the
2-core benchmark machine that took PostgreSQL webhooks at concurrency 16 from about 1,000
to about 300 requests/s, for messages no browser was there to receive. With the in-memory
layer it did so in any process whose first live page had ever opened.

Writers therefore ask ``presence.anyone_watching()`` first (realtime's publishing loop
does). A process counts its own open live sockets, all the in-memory layer can reach. With
Redis, each process that has live sockets open also keeps a key alive there (set when a
socket opens, refreshed while any stays open, gone ``TTL_SECONDS`` after the last one
closes), and writers look for it. A writer remembers Redis's answer briefly: a
"yes" for ``WATCHED_CACHE_SECONDS``, a "no" only for ``UNWATCHED_CACHE_SECONDS``, about one
batch of writes. A write committed within that moment after a page opened (and after the
page read its snapshot) may not be shown until the call's next write. If Redis cannot be
asked, writers send, as before.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from functools import cache
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

KEY = "retellhub:live:watched"
TTL_SECONDS = 30
REFRESH_SECONDS = 10
WATCHED_CACHE_SECONDS = 1.0
UNWATCHED_CACHE_SECONDS = 0.05


@cache
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)


def _mark_watched() -> None:
    _redis(settings.REDIS_URL).set(KEY, b"1", ex=TTL_SECONDS)


class Presence:
    """This process's open live sockets, and what writers last learnt from Redis."""

    def __init__(self) -> None:
        self.open_sockets = 0
        self._refresher: asyncio.Task[None] | None = None
        self._lock = threading.Lock()
        self._answer = False
        self._valid_until = 0.0

    # --- Live sockets (on the server's event loop) ---------------------------------------

    async def socket_opened(self) -> None:
        self.open_sockets += 1
        if not settings.REDIS_URL:
            return  # the in-memory layer: only this process's count matters
        await self._refresh_once()
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_while_open())

    def socket_closed(self) -> None:
        self.open_sockets = max(self.open_sockets - 1, 0)

    async def _refresh_once(self) -> None:
        try:
            await asyncio.to_thread(_mark_watched)
        except Exception as exc:  # writers then ask, fail to, and send anyway
            logger.warning("live monitor presence not recorded: %s", type(exc).__name__)

    async def _refresh_while_open(self) -> None:
        while self.open_sockets > 0:
            await asyncio.sleep(REFRESH_SECONDS)
            if self.open_sockets > 0:
                await self._refresh_once()

    # --- Writers (any thread) -------------------------------------------------------------

    def anyone_watching(self) -> bool:
        """Whether a live socket is open here or, with Redis, in any process."""
        if self.open_sockets > 0:
            return True  # no need to ask Redis
        if not settings.REDIS_URL:
            return False  # the in-memory layer reaches this process's sockets only
        now = time.monotonic()
        with self._lock:
            if now < self._valid_until:
                return self._answer
        try:
            answer = bool(_redis(settings.REDIS_URL).exists(KEY))
        except Exception as exc:
            # Send, as before; and ask again only a while later, not on every write.
            logger.warning("live monitor presence unknown: %s", type(exc).__name__)
            answer = True
        keep = WATCHED_CACHE_SECONDS if answer else UNWATCHED_CACHE_SECONDS
        with self._lock:
            self._answer, self._valid_until = answer, now + keep
        return answer


presence = Presence()
