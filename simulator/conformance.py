"""What counts as a protocol violation, and the state needed to tell.

Each :class:`Rule` cites the part of retell-protocol.md it enforces. The socket player
feeds every frame through :func:`read_frame` (framing and field types), the
:class:`AnswerLedger` (which answer a response frame belongs to, and whether it came too
late) and the :class:`PingTracker` (keepalive deadlines); the webhook player's probes
report through the same rules.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Json = dict[str, Any]


class Rule(StrEnum):
    SOCKET_NOT_OPENED = "socket_not_opened"
    NO_BEGIN_MESSAGE = "no_begin_message"
    STALE_FRAME = "stale_frame"
    ANSWER_NOT_COMPLETED = "answer_not_completed"
    PING_UNANSWERED = "ping_unanswered"
    BINARY_FRAME = "binary_frame"
    NON_JSON_FRAME = "non_json_frame"
    INVALID_FRAME = "invalid_frame"
    FRAME_AFTER_COMPLETE = "frame_after_complete"
    BAD_SIGNATURE_ACCEPTED = "bad_signature_accepted"
    STALE_SIGNATURE_ACCEPTED = "stale_signature_accepted"
    MALFORMED_BODY_ACCEPTED = "malformed_body_accepted"
    LEGACY_BODY_REFUSED = "legacy_body_refused"
    WEBHOOK_REFUSED = "webhook_refused"


RULE_TEXT: dict[Rule, str] = {
    Rule.SOCKET_NOT_OPENED: "the socket could not be opened; Retell ends the call with "
    "error_llm_websocket_open (B.1)",
    Rule.NO_BEGIN_MESSAGE: "no begin message: Retell will not speak before response_id 0 (B.2.4)",
    Rule.STALE_FRAME: "a frame for an older response_id after the server had the newer "
    "request (B.5 stale responses)",
    Rule.ANSWER_NOT_COMPLETED: "an answer never sent content_complete: true; the agent goes "
    "quiet (B.5 always close a response)",
    Rule.PING_UNANSWERED: "a ping_pong not answered in time; Retell closes and reconnects (B.4)",
    Rule.BINARY_FRAME: "a binary frame; Retell hangs up with 1007 (B.1 framing)",
    Rule.NON_JSON_FRAME: "a text frame that is not JSON; Retell ignores it (B.5 type checks)",
    Rule.INVALID_FRAME: "a JSON frame Retell cannot use: wrong shape, types or response_id "
    "(B.4, B.5 type checks)",
    Rule.FRAME_AFTER_COMPLETE: "a frame for an answer already completed (B.5 stale responses)",
    Rule.BAD_SIGNATURE_ACCEPTED: "a webhook with a wrong or missing signature was answered "
    "2xx (A.5)",
    Rule.STALE_SIGNATURE_ACCEPTED: "a webhook signed over 5 minutes ago was answered 2xx (A.5)",
    Rule.MALFORMED_BODY_ACCEPTED: "a signed body that is not JSON was answered 2xx (A.4)",
    Rule.LEGACY_BODY_REFUSED: "a signed legacy body (call under 'data') was refused (A.4)",
    Rule.WEBHOOK_REFUSED: "a signed, well-formed webhook was not answered 2xx within the "
    "timeout; Retell retries (A.1, A.2)",
}


# --- framing and field types --------------------------------------------------------------


class FrameProblem(Exception):
    def __init__(self, rule: Rule, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail


# Required fields per response_type and their types (B.4). ``bool`` is checked apart from
# ``int`` because in Python ``True`` is an int, and Retell would refuse it as an id.
FIELDS: dict[str, dict[str, type]] = {
    "config": {"config": dict},
    "response": {"response_id": int, "content": str, "content_complete": bool},
    "ping_pong": {"timestamp": int},
    "agent_interrupt": {"interrupt_id": int, "content": str, "content_complete": bool},
    "tool_call_invocation": {"tool_call_id": str, "name": str, "arguments": str},
    "tool_call_result": {"tool_call_id": str, "content": str},
    "update_agent": {"agent_config": dict},
    "metadata": {"metadata": dict},
}
OPTIONAL_FIELDS: dict[str, type] = {
    "end_call": bool,
    "transfer_number": str,
    "digit_to_press": str,
    "no_interruption_allowed": bool,
}


@dataclass(frozen=True, slots=True)
class ServerFrame:
    kind: str
    document: Json


def read_frame(message: str | bytes) -> ServerFrame:
    """A usable server frame, or :class:`FrameProblem` naming the rule it breaks."""
    if isinstance(message, bytes):
        raise FrameProblem(Rule.BINARY_FRAME, f"binary frame of {len(message)} bytes")
    try:
        document = json.loads(message)
    except ValueError:
        detail = f"text frame is not JSON: {message[:60]!r}"
        raise FrameProblem(Rule.NON_JSON_FRAME, detail) from None
    if not isinstance(document, dict):
        raise FrameProblem(Rule.INVALID_FRAME, "frame is JSON but not an object")
    # No response_type means "response": Retell's backward compatibility (B.4).
    kind = document.get("response_type", "response")
    if kind not in FIELDS:
        raise FrameProblem(Rule.INVALID_FRAME, f"unknown response_type {kind!r}")
    wanted = {**FIELDS[kind], **{k: v for k, v in OPTIONAL_FIELDS.items() if k in document}}
    for name, expected in wanted.items():
        if not _has_type(document.get(name), expected):
            raise FrameProblem(Rule.INVALID_FRAME, f"{kind}: '{name}' must be {expected.__name__}")
    return ServerFrame(kind=kind, document=document)


def _has_type(value: object, expected: type) -> bool:
    if expected is int and isinstance(value, bool):
        return False
    return isinstance(value, expected)


# --- answers ------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """One requested answer (response_id 0 is the begin message) as it arrived."""

    response_id: int
    kind: str  # begin, response, reminder
    requested_ns: int
    chunks: list[str] = field(default_factory=list)
    frames: int = 0
    first_ns: int | None = None  # first frame with content
    complete_ns: int | None = None
    actions: Json = field(default_factory=dict)
    superseded: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def first_ms(self) -> float | None:
        return None if self.first_ns is None else (self.first_ns - self.requested_ns) / 1e6

    @property
    def complete_ms(self) -> float | None:
        return None if self.complete_ns is None else (self.complete_ns - self.requested_ns) / 1e6


class AnswerLedger:
    """Every answer of one socket, and how far the server has provably read our requests.

    A frame for an older id is only *stale* once the server has shown it received the
    newer request: by sending a frame for it, or by answering a ping we sent after it (one
    connection's frames are read in order). Before that proof it may simply have crossed
    our request on the wire; Retell drops it and so do we, without blame.
    """

    def __init__(self) -> None:
        self.answers: dict[int, Answer] = {}
        self.latest_id = -1  # newest id requested (0: the begin message is expected)
        self.proven_id = 0  # newest id the server has provably received
        self.in_flight = 0

    def expect(self, response_id: int, kind: str, now_ns: int) -> Answer:
        for answer in self.answers.values():
            if answer.complete_ns is None:
                answer.superseded = True
        answer = Answer(response_id, kind, now_ns)
        self.answers[response_id] = answer
        self.latest_id = response_id
        return answer

    def prove(self, response_id: int) -> None:
        self.proven_id = max(self.proven_id, response_id)

    def on_response(self, document: Json, now_ns: int) -> FrameProblem | None:
        response_id = document["response_id"]
        answer = self.answers.get(response_id)
        if answer is None:
            return FrameProblem(
                Rule.INVALID_FRAME, f"response for response_id {response_id}, never requested"
            )
        if response_id < self.proven_id:
            return FrameProblem(
                Rule.STALE_FRAME,
                f"frame for response_id {response_id} after the server had request "
                f"{self.proven_id}",
            )
        self.prove(response_id)
        if response_id < self.latest_id:
            self.in_flight += 1  # crossed our newer request on the wire; dropped
            return None
        if answer.complete_ns is not None:
            return FrameProblem(
                Rule.FRAME_AFTER_COMPLETE, f"frame for response_id {response_id} after it completed"
            )
        _record(answer, document, now_ns)
        return None


def _record(answer: Answer, document: Json, now_ns: int) -> None:
    answer.frames += 1
    answer.started.set()
    if document["content"]:
        answer.chunks.append(document["content"])
        if answer.first_ns is None:
            answer.first_ns = now_ns
    answer.actions.update({key: document[key] for key in OPTIONAL_FIELDS if document.get(key)})
    if document["content_complete"]:
        answer.complete_ns = now_ns
        answer.done.set()


# --- keepalive ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    timestamp: int
    sent_ns: int
    proves_id: int  # the newest request sent before this ping


class PingTracker:
    """Our pings awaiting a ping_pong, matched by echoed timestamp, else oldest first."""

    def __init__(self) -> None:
        self.pending: dict[int, Ping] = {}
        self.round_trips_ns: list[int] = []
        self.idle = asyncio.Event()  # set while no ping is waiting for its answer
        self.idle.set()
        self._last_timestamp = 0

    def next_timestamp(self, now_ms: int) -> int:
        # Retell sends its clock in ms; kept strictly increasing so echoes are unambiguous.
        self._last_timestamp = max(now_ms, self._last_timestamp + 1)
        return self._last_timestamp

    def sent(self, ping: Ping) -> None:
        self.pending[ping.timestamp] = ping
        self.idle.clear()

    def answered(self, timestamp: int, now_ns: int) -> Ping | None:
        ping = self.pending.pop(timestamp, None)
        if ping is None and self.pending:
            # The server sent its own time (D-WS allows it): it answers our oldest ping.
            ping = self.pending.pop(next(iter(self.pending)))
        if ping is not None:
            self.round_trips_ns.append(now_ns - ping.sent_ns)
        self._update_idle()
        return ping

    def overdue(self, now_ns: int, limit_s: float) -> list[Ping]:
        late = [p for p in self.pending.values() if now_ns - p.sent_ns > limit_s * 1e9]
        for ping in late:
            del self.pending[ping.timestamp]
        self._update_idle()
        return late

    def _update_idle(self) -> None:
        if not self.pending:
            self.idle.set()
