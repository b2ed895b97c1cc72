"""What the socket writes: call details and the live transcript into the Call (through the
versioned merge in calls/services.py), and a session CallEvent when the socket closes.

Everything here runs in a worker thread (``thread_sensitive=False``): socket writes must
never queue behind each other's, nor hold up the event loop that answers pings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.utils import timezone

from calls.models import Call, CallStatus
from calls.payloads import call_fields
from calls.realtime import call_broadcast_on_commit
from calls.services import call_socket_observe, call_socket_session_record

SPEAKERS = {"agent": "Agent", "user": "User"}
T = TypeVar("T")


def transcript_text(transcript: Sequence[Mapping[str, Any]]) -> str:
    """Retell's plain-text form: one ``Agent: ...`` / ``User: ...`` line per utterance."""
    lines = (
        f"{SPEAKERS.get(str(item.get('role')), str(item.get('role')).title())}: "
        f"{item.get('content', '')}"
        for item in transcript
    )
    return "".join(f"{line}\n" for line in lines)


def live_transcript(transcript: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Who said what, without the per-word timings: those make the rows several times
    larger on every throttled write, and the final webhooks bring them anyway."""
    return [
        {"role": str(item.get("role", "")), "content": str(item.get("content", ""))}
        for item in transcript
    ]


def socket_fields(
    *, call: Mapping[str, Any] | None, transcript: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Call columns from what the socket saw; a live transcript means the call is ongoing."""
    fields = call_fields(dict(call)) if call else {}
    if transcript:
        fields.update(
            transcript_object=live_transcript(transcript),
            transcript=transcript_text(transcript),
            status=CallStatus.ONGOING.value,
        )
    return fields


def save_observation(*, call_id: str, fields: Mapping[str, Any]) -> None:
    if fields:
        call = call_socket_observe(call_id=call_id, fields=fields, seen_at=timezone.now())
        # The throttled transcript write is also what the live monitor shows: committed
        # above, so this sends at once (the send itself runs off this thread).
        call_broadcast_on_commit(call=call)


def save_transcript(*, call_id: str, transcript: Sequence[Mapping[str, Any]]) -> None:
    # The columns are built here, in the worker thread, not on the event loop.
    save_observation(call_id=call_id, fields=socket_fields(call=None, transcript=transcript))


def save_session(*, call_id: str, summary: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    event = call_socket_session_record(
        call_id=call_id, summary=summary, fields=fields, seen_at=timezone.now()
    )
    call_broadcast_on_commit(call=event.call)  # the transcript's last words, if unsent


def prior_utterances(*, call_id: str) -> int:
    """How much conversation is already on record: more than none means a reconnect."""
    transcript = (
        Call.objects.filter(call_id=call_id).values_list("transcript_object", flat=True).first()
    )
    return len(transcript) if isinstance(transcript, list) else 0


def _in_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    return database_sync_to_async(function, thread_sensitive=False)


async def asave_observation(*, call_id: str, fields: Mapping[str, Any]) -> None:
    await _in_thread(save_observation)(call_id=call_id, fields=fields)


async def asave_transcript(*, call_id: str, transcript: Sequence[Mapping[str, Any]]) -> None:
    await _in_thread(save_transcript)(call_id=call_id, transcript=transcript)


async def asave_session(
    *, call_id: str, summary: Mapping[str, Any], fields: Mapping[str, Any]
) -> None:
    await _in_thread(save_session)(call_id=call_id, summary=summary, fields=fields)


async def aprior_utterances(*, call_id: str) -> int:
    return await _in_thread(prior_utterances)(call_id=call_id)
