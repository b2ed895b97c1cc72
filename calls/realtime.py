"""The live monitor's side of Channels: group names, what is sent, and sending it after commit.

Writers (the webhook's transaction, the call socket's transcript writes) call
:func:`call_broadcast_on_commit` (or ``calls_broadcast_on_commit``) inside their
transaction. Nothing leaves before the commit, so a rolled-back write never reaches a
browser (zulip's ``send_event_on_commit``).

The send itself never runs on the writer's thread either. The commit callback only hands
the call's state to an event loop and returns; there a per-call throttle sends at most one
update per ``LIVE_BROADCAST_INTERVAL_MS`` (the newest state wins), under a timeout. A slow
or unreachable Redis therefore costs the webhook and the call socket nothing: the failure
is logged as a warning, and a browser catches up from the snapshot it gets on reconnect.

Every message carries the call's whole state (or, for the list, the tail of its transcript
and the turn count) and a ``version`` that grows with each committed write, so a browser
replaces what it shows instead of appending: a late or repeated message cannot duplicate
a turn, and a resync simply overwrites.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from calls.dbwork import run_db_job, submit_db_job
from calls.live_presence import presence
from calls.models import Call
from calls.selectors import live_call_get, live_calls, live_calls_by_pk, transcript_turns

logger = logging.getLogger(__name__)

CALLS_GROUP = "calls"
MESSAGE_TYPE = "call.update"  # handled by LiveCallsConsumer.call_update
# The list shows the end of each transcript; the call's own page gets all of it.
LIST_TURNS = 6
SEND_TIMEOUT_SECONDS = 5.0
# Channels accepts group names of ASCII letters, digits, hyphens, underscores and periods,
# shorter than 100 characters.
_GROUP_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_GROUP_MAX_LENGTH = 99


def call_group(call_id: str) -> str:
    """The group of one call's page. Retell's ids fit as they are; any other id gets a
    stable digest, under a prefix no plain id can produce."""
    name = f"call.{call_id}"
    if _GROUP_SAFE.match(call_id) and len(name) <= _GROUP_MAX_LENGTH:
        return name
    return "call-digest." + hashlib.sha256(call_id.encode()).hexdigest()


# --- Payloads ------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def call_version(call: Call) -> int:
    """Grows with every committed write of the row: writers hold its lock while saving."""
    return int(call.updated_at.timestamp() * 1_000_000) if call.updated_at else 0


def call_state(call: Call, *, last_turns: int | None = None) -> dict[str, Any]:
    """What the monitor shows of ``call``; ``last_turns`` keeps only the transcript's end."""
    turns = transcript_turns(call=call)
    shown = turns if last_turns is None else turns[max(len(turns) - last_turns, 0) :]
    return {
        "call_id": call.call_id,
        "status": call.status,
        "finished": call.is_finished,
        "agent": call.agent_name or call.agent_id,
        "direction": call.direction,
        "started_at": _iso(call.started_at),
        # Calls first heard of on the call socket have no start time until call_started.
        "first_seen_at": _iso(call.created_at),
        "ended_at": _iso(call.ended_at),
        "duration_ms": call.duration_ms,
        "turn_count": len(turns),
        "first_turn": len(turns) - len(shown),
        "turns": shown,
        "version": call_version(call),
        "url": reverse("live-call", args=[call.call_id]),
        "admin_url": reverse("admin:calls_call_change", args=[call.pk]),
    }


def _snapshot(calls: list[Call], *, last_turns: int | None) -> dict[str, Any]:
    return {
        "type": "snapshot",
        "server_time": timezone.now().isoformat(),
        "calls": [call_state(call, last_turns=last_turns) for call in calls],
    }


def live_snapshot() -> dict[str, Any]:
    """The list page's whole state: calls in progress and the last finished ones."""
    return _snapshot(live_calls(), last_turns=LIST_TURNS)


def call_snapshot(*, call_id: str) -> dict[str, Any]:
    """One call's page: its whole transcript (no call yet: an empty list)."""
    call = live_call_get(call_id=call_id)
    return _snapshot([call] if call else [], last_turns=None)


# --- Sending ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broadcast:
    call_id: str
    version: int
    summary: dict[str, Any]  # for the list (group "calls")
    detail: dict[str, Any]  # for the call's page (its own group)


def _broadcast_of(call: Call) -> Broadcast:
    return Broadcast(
        call_id=call.call_id,
        version=call_version(call),
        summary=call_state(call, last_turns=LIST_TURNS),
        detail=call_state(call),
    )


async def _send(broadcast: Broadcast) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await layer.group_send(CALLS_GROUP, {"type": MESSAGE_TYPE, "call": broadcast.summary})
            await layer.group_send(
                call_group(broadcast.call_id), {"type": MESSAGE_TYPE, "call": broadcast.detail}
            )
    except Exception as exc:
        # Live views are a convenience: the data is committed, browsers resync on reconnect.
        logger.warning(
            "live monitor update for call %s not sent: %s",
            broadcast.call_id,
            type(exc).__name__,
            extra={"call_id": broadcast.call_id},
        )


class Sender:
    """Sends on the event loop it is used on: per call, the first update at once, then at
    most one per interval, the newest pending state (earlier ones are dropped unsent)."""

    def __init__(self) -> None:
        self._pending: dict[str, Broadcast] = {}
        self._draining: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references

    def submit(self, broadcast: Broadcast) -> None:
        current = self._pending.get(broadcast.call_id)
        if current is None or broadcast.version >= current.version:
            self._pending[broadcast.call_id] = broadcast
        if broadcast.call_id not in self._draining:
            self._draining.add(broadcast.call_id)
            task = asyncio.get_running_loop().create_task(self._drain(broadcast.call_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, call_id: str) -> None:
        try:
            while (broadcast := self._pending.pop(call_id, None)) is not None:
                await _send(broadcast)
                await asyncio.sleep(settings.LIVE_BROADCAST_INTERVAL_MS / 1000)
        finally:
            self._draining.discard(call_id)


_senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sender] = weakref.WeakKeyDictionary()
_server_loop: asyncio.AbstractEventLoop | None = None
_own_loop: asyncio.AbstractEventLoop | None = None
_own_loop_lock = threading.Lock()


def publish_on_this_loop() -> None:
    """Send from the calling loop from now on: the live sockets' loop (the server's).

    The in-memory channel layer is plain asyncio queues, safe only on the loop its
    consumers wait on; so once a live socket is open, updates go out on its loop.
    """
    global _server_loop
    _server_loop = asyncio.get_running_loop()


def _background_loop() -> asyncio.AbstractEventLoop:
    # With Redis, until a live socket opens in this process (or in a process without any,
    # such as a server only taking webhooks beside others), a daemon thread's loop sends.
    global _own_loop
    with _own_loop_lock:
        if _own_loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(
                target=loop.run_forever, name="retellhub-live-sender", daemon=True
            ).start()
            _own_loop = loop
        return _own_loop


def _publishing_loop() -> asyncio.AbstractEventLoop | None:
    """Where updates are sent from; None when no live page is open anywhere it could be
    told (calls/live_presence.py), so that writers build nothing."""
    if not presence.anyone_watching():
        return None
    loop = _server_loop
    if loop is not None and loop.is_running():
        return loop
    if isinstance(get_channel_layer(), InMemoryChannelLayer):
        return None  # a process-local layer and no live socket here: nobody to tell
    return _background_loop()


def _submit(broadcast: Broadcast) -> None:
    loop = asyncio.get_running_loop()
    sender = _senders.get(loop)
    if sender is None:
        sender = _senders[loop] = Sender()
    sender.submit(broadcast)


def publish(broadcast: Broadcast) -> None:
    """Hand ``broadcast`` to the sending loop; returns at once, from any thread."""
    loop = _publishing_loop()
    if loop is not None:
        loop.call_soon_threadsafe(_submit, broadcast)


def _publish_calls(calls: list[Call]) -> None:
    """Hand the committed state of ``calls`` to the sending loop (a commit callback)."""
    _publish_committed(pks=[call.pk for call in calls])


def _publish_committed(*, pks: list[int]) -> None:
    """Hand the committed state of the calls with these primary keys to the sending loop.

    One query reads them all back, with only the columns the monitor shows: writers lock
    only the columns they merge, and a webhook batch commits many calls at once. A query
    per call, loading every column, was most of a webhook's cost while a page was open.
    """
    if _publishing_loop() is None:
        return  # nobody can be watching: skip building the calls' state
    try:
        # A call deleted since (pruned) is simply not read back: nothing left to show.
        for committed in live_calls_by_pk(pks=pks):
            publish(_broadcast_of(committed))
    except Exception:
        # Never let the live view break a write that has already committed.
        logger.warning("live monitor update for calls %s not queued", pks, exc_info=True)


def calls_written_elsewhere(*, pks: list[int]) -> None:
    """Calls another process committed (the webhook's writer, calls/writer_process.py),
    shown to this process's live pages where that process could not reach them: with the
    in-memory channel layer. Through Redis it sent the updates itself."""
    if isinstance(get_channel_layer(), InMemoryChannelLayer) and _publishing_loop():
        submit_db_job(partial(run_db_job, _publish_committed, pks=pks))


def call_broadcast_on_commit(*, call: Call) -> None:
    """Show ``call`` as saved to live monitors once the current transaction commits
    (outside a transaction: at once). Nothing is sent if it rolls back."""
    calls_broadcast_on_commit(calls=[call])


def calls_broadcast_on_commit(*, calls: list[Call]) -> None:
    """``call_broadcast_on_commit`` for several calls, read back together."""
    if calls:
        transaction.on_commit(partial(_publish_calls, calls), robust=True)
