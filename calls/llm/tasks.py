"""The tasks one call socket runs beside its frames: the opening, each answer, the live
transcript's writes, the end-call hang-up (calls/llm/session.py).

Nothing awaits them while they run, so each is kept until it ends: the session can then
cancel them all when the socket closes and wait for them before it writes its record, and
a task that fails is logged here rather than lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

# These lines have always come from the session's logger, and filters and searches on the
# logger name should keep finding them.
logger = logging.getLogger("calls.llm.session")

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class SessionTasks:
    """The running tasks of one call's session, each named ``llm-<name>-<call_id>``."""

    def __init__(self, *, call_id: str) -> None:
        self.call_id = call_id
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=f"llm-{name}-{self.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    @property
    def running(self) -> int:
        return sum(not task.done() for task in self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task and return once all have ended, however they ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "llm socket task %s failed",
                task.get_name(),
                exc_info=task.exception(),
                extra={"call_id": self.call_id},
            )


def cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
