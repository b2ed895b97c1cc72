"""One call's socket session: the state machine behind ``/llm-websocket/<call_id>``.

The consumer hands every inbound frame to :meth:`CallSession.receive_text` and returns at
once; nothing slow runs on that path. Pings are answered inline. Answers, the opening
(begin message), the live transcript's writes (calls/llm/live_transcript.py) and the
end-call hang-up each run in their own task, so ``ping_pong`` is never queued behind
generation or a database write.

Cancellation is exact: a newer ``response_id`` cancels the task generating the older one
before anything else happens, and every frame for an answer is sent only while its id is
still the newest the session has received. Cancelling the task closes the responder's
stream (``aclosing``), which closes the upstream HTTP response.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from calls.llm import records
from calls.llm.live_transcript import LiveTranscript
from calls.llm.profiles import (
    Profile,
    aprofile_for_agent,
    call_variables,
    default_profile,
    render,
)
from calls.llm.protocol import (
    BEGIN_RESPONSE_ID,
    AnswerRequest,
    CallDetails,
    FrameError,
    PingPong,
    TranscriptUpdate,
    config_frame,
    encode,
    final_frame,
    parse_frame,
    ping_frame,
    response_frame,
    tool_invocation_frame,
    tool_result_frame,
)
from calls.llm.responders import (
    AnswerContext,
    EndCall,
    Piece,
    PressDigit,
    Speak,
    ToolFinished,
    ToolStarted,
    Transfer,
    prepare_responder,
    responder_for,
)
from calls.llm.tasks import SessionTasks, cancel
from calls.llm.turns import Turn, elapsed_ms
from retellhub import metrics

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
CloseSocket = Callable[[int], Awaitable[None]]

NORMAL_CLOSURE = 1000
MAX_TURN_RECORDS = 1000


@dataclass(frozen=True, slots=True)
class SessionOptions:
    max_frame_bytes: int
    answer_timeout: float
    call_details_wait: float
    end_call_close_delay: float
    transcript_save_interval: float

    @classmethod
    def from_settings(cls) -> SessionOptions:
        return cls(
            max_frame_bytes=settings.LLM_SOCKET_MAX_FRAME_BYTES,
            answer_timeout=settings.LLM_ANSWER_TIMEOUT_MS / 1000,
            call_details_wait=settings.LLM_CALL_DETAILS_WAIT_MS / 1000,
            end_call_close_delay=settings.LLM_END_CALL_CLOSE_MS / 1000,
            transcript_save_interval=settings.LLM_TRANSCRIPT_SAVE_INTERVAL_MS / 1000,
        )


class CallSession:
    def __init__(
        self,
        *,
        call_id: str,
        send_text: SendText,
        close_socket: CloseSocket,
        options: SessionOptions,
    ) -> None:
        self.call_id = call_id
        self.options = options
        self._send_text = send_text
        self._close_socket = close_socket
        self.session_id = uuid.uuid4().hex
        self.connected_at = timezone.now()
        self._opened = time.perf_counter()
        # The newest response_id received; the begin message (0) may go out until a real
        # request arrives.
        self.latest_request_id = BEGIN_RESPONSE_ID
        self.tasks = SessionTasks(call_id=call_id)
        self.live = LiveTranscript(
            call_id=call_id, interval=options.transcript_save_interval, spawn=self.tasks.spawn
        )
        self.call_details_seen = asyncio.Event()
        self.profile: asyncio.Future[Profile] = asyncio.get_running_loop().create_future()
        self.turns: dict[int, Turn] = {}
        self.ignored: Counter[str] = Counter()
        self.pings = 0
        self.begin_ms: float | None = None
        self.reconnect = False
        self.server_close_code: int | None = None
        self.closed = False
        self._answer: asyncio.Task[None] | None = None
        self._hangup: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self._send(config_frame())
        self.tasks.spawn(self._open(), "open")

    async def shutdown(self, *, close_code: int) -> None:
        """Cancel every task of the session, wait for them, then record the session."""
        if self.closed:
            return
        self.closed = True
        await self.tasks.cancel_all()
        for turn in self.turns.values():
            if turn.outcome == "open":
                turn.outcome = "disconnected"
        await self._save_session(close_code)

    # --- inbound -----------------------------------------------------------------------

    async def receive_text(self, text: str) -> None:
        received = time.perf_counter()
        if self._oversized(text):
            self._ignore("oversized")
            return
        try:
            message = parse_frame(text)
        except FrameError as exc:
            self._ignore(exc.reason)
            return
        match message:
            case PingPong(timestamp=timestamp):
                self.pings += 1
                await self._send(ping_frame(timestamp))
            case CallDetails(call=call):
                self._on_call_details(call)
            case TranscriptUpdate(transcript=transcript):
                # Keep and persist it; it never cancels a pending answer (D-WS).
                self.live.remember(transcript)
            case AnswerRequest():
                self._on_request(message, received)

    def receive_binary(self) -> None:
        self._ignore("binary")

    def _oversized(self, text: str) -> bool:
        limit = self.options.max_frame_bytes
        # A character is at most 4 UTF-8 bytes: only encode when the length is ambiguous.
        return len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit)

    def _ignore(self, reason: str) -> None:
        # The reason only: frames carry what the caller said.
        self.ignored[reason] += 1
        logger.warning("llm socket ignored a frame: %s", reason, extra={"call_id": self.call_id})

    def _on_call_details(self, call: dict[str, Any]) -> None:
        # set() only schedules the waiting opening's wake-up: it finds the details stored.
        self.call_details_seen.set()
        self.live.remember_details(call)

    def _on_request(self, request: AnswerRequest, received: float) -> None:
        if request.response_id <= self.latest_request_id:
            # Retell's ids only grow; an equal or lower one is a duplicate or arrived late.
            self._ignore("stale_response_id")
            return
        self.latest_request_id = request.response_id
        self._supersede_answer()
        cancel(self._hangup)  # the caller spoke after an end_call: the call goes on
        if request.transcript:
            self.live.remember(request.transcript)
        turn = Turn(request.response_id, "reminder" if request.reminder else "response", received)
        self._record_turn(turn)
        self._answer = self.tasks.spawn(self._respond(turn), f"answer-{request.response_id}")

    def _supersede_answer(self) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.cancel()
            for turn in self.turns.values():
                if turn.outcome == "open":
                    turn.outcome = "cancelled"
                    metrics.llm_answer_cancelled()

    def _record_turn(self, turn: Turn) -> None:
        self.turns[turn.response_id] = turn
        if len(self.turns) > MAX_TURN_RECORDS:
            del self.turns[next(iter(self.turns))]

    # --- outbound ----------------------------------------------------------------------

    async def _send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            await self._send_text(encode(frame))

    async def _send_for(self, response_id: int, frame: dict[str, Any]) -> bool:
        """Send a frame of answer ``response_id`` only while it is the newest request.

        The check and the send happen without a suspension point in between, so once a
        newer request has been received no frame for an older id can leave.
        """
        if self.closed or response_id != self.latest_request_id:
            return False
        await self._send_text(encode(frame))
        return True

    # --- opening -----------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            opening = await records.aopening_facts(call_id=self.call_id)
            self.reconnect = opening.reconnect
            profile = await self._choose_profile(per_agent=opening.agent_profiles)
        except Exception:
            logger.exception("llm socket: no profile; using built-in lines")
            profile = Profile()
        self.profile.set_result(profile)
        try:
            prepare_responder(profile)
        except Exception:  # the first answer will try again, and fall back if it must
            logger.warning("llm responder not prepared", exc_info=True)
        # After a reconnect the conversation is under way: an empty begin message lets
        # the agent wait for the caller instead of greeting them a second time.
        begin = "" if self.reconnect else render(profile.begin_message, self.variables)
        if await self._send_for(BEGIN_RESPONSE_ID, final_frame(BEGIN_RESPONSE_ID, begin, {})):
            self.begin_ms = elapsed_ms(self._opened)

    async def _choose_profile(self, *, per_agent: bool) -> Profile:
        fallback = default_profile()
        if not per_agent and not fallback.greeting_needs_call_data:
            return fallback
        # The greeting needs the agent or the call's variables: hold it for call_details,
        # which Retell sends right after our config (D-SETUP), but not forever.
        with suppress(TimeoutError):
            async with asyncio.timeout(self.options.call_details_wait):
                await self.call_details_seen.wait()
        if not per_agent:
            return fallback
        agent_id = self.live.call.get("agent_id") if self.live.call else None
        return await aprofile_for_agent(agent_id if isinstance(agent_id, str) else None)

    @property
    def variables(self) -> dict[str, str]:
        return call_variables(self.live.call)

    # --- answering ---------------------------------------------------------------------

    async def _respond(self, turn: Turn) -> None:
        profile = await asyncio.shield(self.profile)
        context = AnswerContext(
            response_id=turn.response_id,
            transcript=tuple(self.live.transcript),
            reminder=turn.kind == "reminder",
            profile=profile,
            variables=self.variables,
        )
        try:
            async with asyncio.timeout(self.options.answer_timeout):
                await self._stream(context, turn)
            turn.outcome = "complete"
        except TimeoutError:
            turn.outcome = "timeout"
            logger.warning("llm answer timed out", extra={"call_id": self.call_id})
        except Exception as exc:
            turn.outcome = "failed"
            logger.warning(
                "llm answer failed: %s", type(exc).__name__, extra={"call_id": self.call_id}
            )
        await self._finish(turn, profile)

    async def _stream(self, context: AnswerContext, turn: Turn) -> None:
        async with aclosing(responder_for(context.profile).answer(context)) as pieces:
            async for piece in pieces:
                await self._emit(piece, turn)

    async def _emit(self, piece: Piece, turn: Turn) -> None:
        response_id = turn.response_id
        match piece:
            case Speak(text=text) if text:
                if await self._send_for(response_id, response_frame(response_id, text)):
                    turn.spoken = True
                    turn.frame_sent(complete=False)
            case ToolStarted(tool_call_id=tool_call_id, name=name, arguments=arguments):
                turn.tool_calls.append(name)
                await self._send_for(
                    response_id, tool_invocation_frame(tool_call_id, name, arguments)
                )
            case ToolFinished(tool_call_id=tool_call_id, content=content, successful=ok):
                await self._send_for(response_id, tool_result_frame(tool_call_id, content, ok))
            case EndCall() | Transfer() | PressDigit():
                turn.offer(piece)

    async def _finish(self, turn: Turn, profile: Profile) -> None:
        """Close the answer with ``content_complete``, also after a failure or timeout."""
        failed = turn.outcome != "complete"
        # Never leave the caller in silence; but after a half-spoken answer a fallback
        # line would sound odd, so then the answer simply ends.
        content = (
            render(profile.fallback_line, self.variables) if failed and not turn.spoken else ""
        )
        frame = final_frame(turn.response_id, content, turn.action_fields())
        if await self._send_for(turn.response_id, frame):
            turn.frame_sent(complete=True)
            if isinstance(turn.action, EndCall):
                self._hangup = self.tasks.spawn(self._hang_up_later(), "hangup")

    async def _hang_up_later(self) -> None:
        # Retell hangs up itself once the closing line is spoken; this only makes sure the
        # socket does not outlive the call. A newer request (the caller talked over the
        # goodbye, so Retell dropped the end_call) cancels it.
        await asyncio.sleep(self.options.end_call_close_delay)
        self.server_close_code = NORMAL_CLOSURE
        await self._close_socket(NORMAL_CLOSURE)

    # --- records -----------------------------------------------------------------------

    def summary(self, close_code: int) -> dict[str, Any]:
        turns = [turn.as_record() for turn in self.turns.values()]
        profile = self.profile.result() if self.profile.done() else None
        outcomes = Counter(turn["outcome"] for turn in turns)
        return {
            "session_id": self.session_id,
            "call_id": self.call_id,
            "connected_at": self.connected_at.isoformat(),
            "closed_at": timezone.now().isoformat(),
            "close_code": close_code,
            "closed_by": "server" if self.server_close_code is not None else "client",
            "reconnect": self.reconnect,
            "profile": profile.name if profile else None,
            "responder": profile.responder if profile else None,
            "begin_message_ms": self.begin_ms,
            "answers": len(turns),
            "cancelled": outcomes["cancelled"],
            "failed": outcomes["failed"] + outcomes["timeout"],
            "tool_calls": [name for turn in turns for name in turn["tool_calls"]],
            "pings": self.pings,
            "ignored_frames": dict(self.ignored),
            "turns": turns,
        }

    async def _save_session(self, close_code: int) -> None:
        summary = self.summary(close_code)
        await self.live.save_final(summary=summary)
        logger.info(
            "llm socket closed: call %s code %s answers %d cancelled %d",
            self.call_id,
            close_code,
            summary["answers"],
            summary["cancelled"],
        )
