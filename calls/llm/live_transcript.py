"""What one call socket has seen of its call, written to the Call row while the call runs.

Retell resends the whole transcript with every update and every request, often several
times a second, and many calls run at once: a write for each would queue the database
threads behind one another. So the writes are throttled and coalesced, and the session's
closing write (calls/llm/session.py) carries the last state whether or not one was owed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from calls.llm import records
from calls.llm.protocol import Utterance
from calls.llm.tasks import Spawn

# These lines have always come from the session's logger, and filters and searches on the
# logger name should keep finding them.
logger = logging.getLogger("calls.llm.session")


class LiveTranscript:
    """The latest call details and transcript of one socket, and their writes to the Call.

    The writer task is started with ``spawn``, the session's, so that it is one of the
    session's tasks: cancelled at shutdown, and logged if it ever fails.
    """

    def __init__(self, *, call_id: str, interval: float, spawn: Spawn) -> None:
        self.call_id = call_id
        self.interval = interval
        self._spawn = spawn
        self.call: dict[str, Any] | None = None
        self.transcript: list[Utterance] = []
        self._unsaved = False  # the live state changed since the last write
        self._details_unsaved = False
        self._writer: asyncio.Task[None] | None = None

    def remember(self, transcript: list[Utterance]) -> None:
        if transcript == self.transcript:
            return  # Retell repeats it in update_only and in the request that follows
        self.transcript = transcript
        self._save_soon()

    def remember_details(self, call: dict[str, Any]) -> None:
        self.call = call
        self._details_unsaved = True
        self._save_soon()

    def _save_soon(self) -> None:
        self._unsaved = True
        if self._writer is None or self._writer.done():
            self._writer = self._spawn(self._write_while_unsaved(), "live")

    async def _write_while_unsaved(self) -> None:
        # Throttled and coalesced: one write at a time per call, at most one per interval,
        # and whatever arrived meanwhile is written once, the latest. The call details ride
        # on the first write, usually with the first transcript: one row write instead of
        # two while a call opens (often alongside many others). The list is never mutated
        # (a new transcript replaces it), so the worker thread may read it.
        while self._unsaved:
            await asyncio.sleep(self.interval)
            self._unsaved = False
            call = self.call if self._details_unsaved else None
            self._details_unsaved = False
            try:
                await records.asave_transcript(
                    call_id=self.call_id, transcript=self.transcript, call=call
                )
            except Exception:
                logger.exception(
                    "llm socket could not save the call", extra={"call_id": self.call_id}
                )

    async def save_final(self, *, summary: Mapping[str, Any]) -> None:
        """The session's CallEvent with the last details and transcript seen.

        The session calls it once its tasks, the writer among them, have stopped: a write
        the throttle still owed is made here, together with the summary.
        """
        try:
            await records.asave_session(
                call_id=self.call_id, summary=summary, call=self.call, transcript=self.transcript
            )
        except Exception:
            logger.exception(
                "llm socket could not save the session", extra={"call_id": self.call_id}
            )
