"""What the socket writes: call details and the live transcript into the Call (through the
versioned merge in calls/services.py), and a session CallEvent when the socket closes.

Nothing here runs on the event loop that answers pings. Writes go to the database threads
of calls/dbwork.py, which keep their connection between jobs: opened and closed per write
(as a fresh worker thread does), a SQLite connection cost ~1.6 ms of CPU and a WAL
checkpoint each time, and several threads writing at once only took turns on SQLite's
one write lock by sleeping and polling. Reads run on threads of their own (calls/llm/reads.py):
they never wait for a write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.utils import timezone

from calls.dbwork import arun_db_job, db_threads
from calls.llm.profiles import agent_profiles_configured
from calls.llm.reads import aread
from calls.models import CallStatus
from calls.payloads import call_fields
from calls.realtime import call_broadcast_on_commit
from calls.selectors import calls_with_transcript
from calls.socket_services import call_socket_observe, call_socket_session_record

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


def save_transcript(
    *,
    call_id: str,
    transcript: Sequence[Mapping[str, Any]],
    call: Mapping[str, Any] | None = None,
) -> None:
    """The live transcript, and the call details when ``call`` is given (not yet written)."""
    # The columns are built here, in the worker thread, not on the event loop.
    save_observation(call_id=call_id, fields=socket_fields(call=call, transcript=transcript))


def save_session(*, call_id: str, summary: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    event = call_socket_session_record(
        call_id=call_id, summary=summary, fields=fields, seen_at=timezone.now()
    )
    call_broadcast_on_commit(call=event.call)  # the transcript's last words, if unsent


def prior_utterances(*, call_id: str) -> int:
    """How much conversation is already on record: more than none means a reconnect."""
    call = calls_with_transcript().filter(call_id=call_id).first()
    transcript = call.transcript_document("transcript_object") if call else None
    return len(transcript) if isinstance(transcript, list) else 0


@dataclass(frozen=True, slots=True)
class Opening:
    """What a socket reads when it opens, in one trip to a read thread."""

    reconnect: bool
    agent_profiles: bool


def opening_facts(*, call_id: str) -> Opening:
    return Opening(
        reconnect=prior_utterances(call_id=call_id) > 0,
        agent_profiles=agent_profiles_configured(),
    )


async def _on_db_thread(function: Callable[..., T], /, **kwargs: Any) -> T:
    # One job on a database thread (calls/dbwork.py), like the webhook's writes.
    return await arun_db_job(db_threads, function, **kwargs)


async def asave_transcript(
    *,
    call_id: str,
    transcript: Sequence[Mapping[str, Any]],
    call: Mapping[str, Any] | None = None,
) -> None:
    await _on_db_thread(save_transcript, call_id=call_id, transcript=transcript, call=call)


def save_final_state(
    *,
    call_id: str,
    summary: Mapping[str, Any],
    call: Mapping[str, Any] | None,
    transcript: Sequence[Mapping[str, Any]],
) -> None:
    # The columns are built here, in the worker thread, not on the event loop.
    save_session(
        call_id=call_id, summary=summary, fields=socket_fields(call=call, transcript=transcript)
    )


async def asave_session(
    *,
    call_id: str,
    summary: Mapping[str, Any],
    call: Mapping[str, Any] | None,
    transcript: Sequence[Mapping[str, Any]],
) -> None:
    """The session's CallEvent, with the last call details and transcript it saw."""
    await _on_db_thread(
        save_final_state, call_id=call_id, summary=summary, call=call, transcript=transcript
    )


async def aopening_facts(*, call_id: str) -> Opening:
    return await aread(opening_facts, call_id=call_id)
