"""The socket's wire format (retell-protocol.md B): typed inbound messages, outbound frames.

Parsing is strict about what we rely on (``response_id`` is an int, the transcript a list)
and lenient about everything else: unknown keys are ignored, because Retell adds fields.
A :class:`FrameError` carries a short reason that is safe to log; never the frame itself,
which holds what the caller said.

JSON goes through retellhub/fastjson.py (orjson): every update_only and response_required
carries the whole transcript with per-word timings, decoded on the event loop that also
answers every call's pings, and every streamed token is one encoded frame.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from retellhub import fastjson

Utterance = dict[str, Any]


class FrameError(ValueError):
    """An inbound frame we cannot use; ``reason`` is a fixed token, safe for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PingPong:
    timestamp: int


@dataclass(frozen=True, slots=True)
class CallDetails:
    call: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TranscriptUpdate:
    transcript: list[Utterance]


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    response_id: int
    transcript: list[Utterance]
    reminder: bool


Inbound = PingPong | CallDetails | TranscriptUpdate | AnswerRequest


def parse_frame(text: str | bytes) -> Inbound:
    try:
        document = fastjson.loads(text)
    except ValueError:
        raise FrameError("not_json") from None
    if not isinstance(document, dict):
        raise FrameError("not_object")
    kind = document.get("interaction_type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise FrameError("unknown_interaction_type")
    return parser(document)


def _int(document: dict[str, Any], name: str) -> int:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"bad_{name}")
    return value


def _transcript(document: dict[str, Any], *, required: bool) -> list[Utterance]:
    value = document.get("transcript")
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise FrameError("bad_transcript")
    # Keep well-formed utterances only; one odd entry must not cost the whole turn. And
    # keep who said what, nothing else: the per-word timings are most of every frame and
    # nothing reads them. Dropped here, they do not stay in memory for the rest of the call,
    # where every full garbage collection would walk them again.
    return [
        {"role": item["role"], "content": item["content"]}
        for item in value
        if isinstance(item, dict)
        and isinstance(item.get("role"), str)
        and isinstance(item.get("content"), str)
    ]


def _ping(document: dict[str, Any]) -> PingPong:
    return PingPong(timestamp=_int(document, "timestamp"))


def _call_details(document: dict[str, Any]) -> CallDetails:
    call = document.get("call")
    if not isinstance(call, dict):
        raise FrameError("bad_call")
    return CallDetails(call=call)


def _update(document: dict[str, Any]) -> TranscriptUpdate:
    return TranscriptUpdate(transcript=_transcript(document, required=True))


def _request(document: dict[str, Any]) -> AnswerRequest:
    response_id = _int(document, "response_id")
    if response_id < 1:
        # 0 is the begin message, which is ours to send, never Retell's to ask for.
        raise FrameError("bad_response_id")
    return AnswerRequest(
        response_id=response_id,
        transcript=_transcript(document, required=False),
        reminder=document["interaction_type"] == "reminder_required",
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Inbound]] = {
    "ping_pong": _ping,
    "call_details": _call_details,
    "update_only": _update,
    "response_required": _request,
    "reminder_required": _request,
}


# --- Outbound -------------------------------------------------------------------------------

BEGIN_RESPONSE_ID = 0


def encode(frame: dict[str, Any]) -> str:
    """A text frame, always: a binary frame makes Retell hang up (1007)."""
    return fastjson.dumps_str(frame)


def config_frame() -> dict[str, Any]:
    # auto_reconnect turns on Retell's ping_pong and its reconnects; call_details pushes
    # the call object (agent, numbers, dynamic variables) right after this frame.
    return {
        "response_type": "config",
        "config": {"auto_reconnect": True, "call_details": True},
    }


def ping_frame(timestamp: int) -> dict[str, Any]:
    # Echo Retell's own timestamp, as its demos do (retell-protocol.md E.4).
    return {"response_type": "ping_pong", "timestamp": timestamp}


def response_frame(response_id: int, content: str) -> dict[str, Any]:
    return {
        "response_type": "response",
        "response_id": response_id,
        "content": content,
        "content_complete": False,
    }


def final_frame(response_id: int, content: str, actions: dict[str, Any]) -> dict[str, Any]:
    """The closing chunk of an answer; ``actions`` holds at most one of end_call/transfer/digit."""
    return {
        "response_type": "response",
        "response_id": response_id,
        "content": content,
        "content_complete": True,
        **actions,
    }


def tool_invocation_frame(tool_call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "response_type": "tool_call_invocation",
        "tool_call_id": tool_call_id,
        "name": name,
        "arguments": arguments,
    }


def tool_result_frame(tool_call_id: str, content: str, successful: bool) -> dict[str, Any]:
    return {
        "response_type": "tool_call_result",
        "tool_call_id": tool_call_id,
        "content": content,
        "successful": successful,
    }
