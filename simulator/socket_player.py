"""The socket half of a call: Retell's side of ``/llm-websocket/<call_id>`` (protocol B).

One task reads every frame (and checks it); the scenario runs in the caller's task and
waits on the answers the reader fills in; a keepalive task pings when the server asked
for ``auto_reconnect``. Like Retell, the player hangs up with 1007 on a binary frame, and
treats a close from the server as the end of the call.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.calldata import utterance
from simulator.callobject import CallIdentity, Json, registered_call
from simulator.conformance import (
    Answer,
    AnswerLedger,
    FrameProblem,
    Ping,
    PingTracker,
    Rule,
    ServerFrame,
    read_frame,
)
from simulator.scenario import Scenario, Step
from simulator.timeline import Timeline

CORRUPT_PAYLOAD = 1007
NORMAL_CLOSURE = 1000
SECONDS_PER_WORD = 0.3  # ~200 words a minute, a brisk phone voice
MAX_SPEAKING_S = 4.0
# Server close code -> the disconnection_reason Retell records (B.1, D-TRBL).
CLOSE_REASONS = {NORMAL_CLOSURE: "agent_hangup", 1005: "error_llm_websocket_open"}


@dataclass(frozen=True, slots=True)
class Timing:
    """Every wait of the player; tests shorten the one they exercise."""

    begin_timeout: float = 5.0
    answer_timeout: float = 10.0
    ping_interval: float = 2.0  # Retell's cadence (B.4 config)
    ping_timeout: float = 5.0  # Retell's limit (B.4 config)
    open_timeout: float = 10.0
    http_timeout: float = 10.0  # Retell's webhook timeout (A.2)
    pace: float = 1.0  # multiplies silences and speaking time; 0 plays as fast as possible


class SocketPlayer:
    def __init__(
        self,
        ws: ClientConnection,
        *,
        identity: CallIdentity,
        scenario: Scenario,
        timing: Timing,
        timeline: Timeline,
        rng: random.Random,
    ) -> None:
        self.ws = ws
        self.identity = identity
        self.scenario = scenario
        self.timing = timing
        self.timeline = timeline
        self.rng = rng
        self.ledger = AnswerLedger()
        self.pings = PingTracker()
        self.transcript: list[Json] = []
        self.config: Json | None = None
        self.ending: str | None = None
        self.transfer_destination: str | None = None
        self.interruptions = 0
        self.ended = asyncio.Event()
        self._keepalive: asyncio.Task[None] | None = None

    # --- the call -----------------------------------------------------------------------

    async def play(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            await self._open()
            for step in self.scenario.steps:
                if self.ended.is_set():
                    break
                await (self._silence(step) if step.is_silence else self._say(step))
            await self._settle_pings()
        finally:
            if self.ending is None:
                self.ending = self.scenario.hangup
            await self._stop(reader)

    async def _open(self) -> None:
        begin = self.ledger.expect(0, "begin", time.perf_counter_ns())
        self.timeline.add("socket", "connected")
        await self._wait_for(begin.done, self.timing.begin_timeout)
        if not begin.started.is_set() and not self.ended.is_set():
            self.timeline.violate(
                Rule.NO_BEGIN_MESSAGE, f"nothing for response_id 0 in {self.timing.begin_timeout}s"
            )
        self._finish_answer(begin)
        await self._pause(self._speaking_time(begin.text))

    async def _say(self, step: Step) -> None:
        await self._caller_speaks(step.say)
        answer = await self._request("response_required")
        if step.interrupt:
            answer = await self._interrupt(answer, step.interrupt)
        await self._hear_out(answer)

    async def _hear_out(self, answer: Answer) -> None:
        """Wait for the answer to complete, then for the agent to finish saying it."""
        await self._wait_for(answer.done, self.timing.answer_timeout)
        self._finish_answer(answer)
        await self._pause(self._speaking_time(answer.text))

    async def _interrupt(self, answer: Answer, text: str) -> Answer:
        """Talk over ``answer`` as soon as it starts: Retell sends a newer request."""
        await self._wait_for(answer.started, self.timing.answer_timeout)
        if self.ended.is_set():
            return answer
        self.interruptions += 1
        state = "complete" if answer.done.is_set() else f"{answer.frames} frame(s) in"
        self._agent_said(answer, note=f"talked over ({state})")
        self._add_utterance("user", text)
        self.timeline.add("caller", text, interrupting=answer.response_id)
        return await self._request("response_required")

    async def _silence(self, step: Step) -> None:
        await self._pause(step.silence_ms / 1000)
        self.timeline.add("caller", f"(silent for {step.silence_ms / 1000:g} s)")
        await self._hear_out(await self._request("reminder_required"))

    async def _caller_speaks(self, text: str) -> None:
        # Retell streams the transcript as the caller talks, then asks once they stop.
        words = text.split()
        partial = utterance(self.rng, "user", " ".join(words[: max(1, len(words) // 2)]), 0)
        await self._send(
            {
                "interaction_type": "update_only",
                "transcript": [*self.transcript, partial],
                "turntaking": "user_turn",
            }
        )
        await self._pause(self._speaking_time(text))
        self._add_utterance("user", text)
        self.timeline.add("caller", text)

    async def _request(self, kind: str) -> Answer:
        response_id = self.ledger.latest_id + 1
        kind_name = "reminder" if kind == "reminder_required" else "response"
        answer = self.ledger.expect(response_id, kind_name, time.perf_counter_ns())
        await self._send(
            {"interaction_type": kind, "response_id": response_id, "transcript": self.transcript}
        )
        if self._keepalive is not None:
            # Right behind the request: its pong proves the server has read the request.
            await self._ping()
        return answer

    def _finish_answer(self, answer: Answer) -> None:
        """Record a finished (or abandoned) answer and act on what it asks."""
        if answer.done.is_set():
            self._agent_said(answer)
            self._act_on(answer.actions)
        elif answer.started.is_set() or answer.response_id > 0:
            if not self.ended.is_set():
                self.timeline.violate(
                    Rule.ANSWER_NOT_COMPLETED,
                    f"response_id {answer.response_id}: {answer.frames} frame(s), no "
                    f"content_complete in {self._answer_limit(answer)}s",
                )
            self._agent_said(answer, note="never completed")

    def _answer_limit(self, answer: Answer) -> float:
        return self.timing.begin_timeout if answer.response_id == 0 else self.timing.answer_timeout

    def _agent_said(self, answer: Answer, note: str = "") -> None:
        if answer.text:
            self._add_utterance("agent", answer.text)
        label = "begin" if answer.response_id == 0 else f"#{answer.response_id}"
        self.timeline.add(
            "agent",
            answer.text or "(nothing)",
            response_id=answer.response_id,
            label=label,
            kind=answer.kind,
            first_ms=answer.first_ms,
            complete_ms=answer.complete_ms,
            note=note,
        )

    def _act_on(self, actions: Json) -> None:
        # Precedence end_call > transfer_number > digit_to_press (B.5 actions).
        if actions.get("end_call"):
            self._end("agent_hangup", "agent ended the call")
        elif actions.get("transfer_number"):
            self.transfer_destination = str(actions["transfer_number"])
            self._end("call_transfer", f"transferred to {self.transfer_destination}")
        elif actions.get("digit_to_press"):
            self.timeline.add("socket", f"agent pressed {actions['digit_to_press']}")

    def _end(self, reason: str, text: str) -> None:
        if self.ending is None:
            self.ending = reason
            self.timeline.add("socket", text, reason=reason)
        self.ended.set()

    def _add_utterance(self, role: str, text: str) -> None:
        self.transcript.append(utterance(self.rng, role, text, round(self.timeline.now(), 3)))

    # --- frames from the server ---------------------------------------------------------

    async def _read(self) -> None:
        with suppress(ConnectionClosed):
            async for message in self.ws:
                try:
                    frame = read_frame(message)
                except FrameProblem as problem:
                    self.timeline.violate(problem.rule, problem.detail)
                    if problem.rule is Rule.BINARY_FRAME:
                        self._end("error_llm_websocket_corrupt_payload", "hung up: binary frame")
                        await self.ws.close(CORRUPT_PAYLOAD)
                        return
                    continue
                await self._route(frame)
        if not self.ended.is_set():
            code = self.ws.close_code
            reason = CLOSE_REASONS.get(code or 1005, "error_llm_websocket_runtime")
            self._end(reason, f"server closed the socket ({code})")

    async def _route(self, frame: ServerFrame) -> None:
        now = time.perf_counter_ns()
        document = frame.document
        if frame.kind == "response":
            problem = self.ledger.on_response(document, now)
            if problem is not None:
                self.timeline.violate(problem.rule, problem.detail)
        elif frame.kind == "ping_pong":
            ping = self.pings.answered(document["timestamp"], now)
            if ping is not None:
                self.ledger.prove(ping.proves_id)
        elif frame.kind == "config":
            await self._configure(document["config"])
        else:
            self.timeline.add("socket", f"server sent {frame.kind}", frame=document)

    async def _configure(self, config: Json) -> None:
        self.config = config
        wanted = [name for name, on in config.items() if on is True]
        self.timeline.add("socket", "config: " + (", ".join(wanted) or "nothing"))
        if config.get("call_details") is True:
            call = registered_call(self.identity)
            await self._send({"interaction_type": "call_details", "call": call})
        if config.get("auto_reconnect") is True and self._keepalive is None:
            self._keepalive = asyncio.create_task(self._keep_alive())

    # --- keepalive ----------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        next_ping = 0.0
        while True:
            if time.monotonic() >= next_ping:
                await self._ping()
                next_ping = time.monotonic() + self.timing.ping_interval
            self._flag_late_pings()
            await asyncio.sleep(min(self.timing.ping_interval, self.timing.ping_timeout) / 4)

    async def _ping(self) -> None:
        stamp = self.pings.next_timestamp(time.time_ns() // 1_000_000)
        self.pings.sent(Ping(stamp, time.perf_counter_ns(), self.ledger.latest_id))
        await self._send({"interaction_type": "ping_pong", "timestamp": stamp})

    def _flag_late_pings(self) -> None:
        for ping in self.pings.overdue(time.perf_counter_ns(), self.timing.ping_timeout):
            self.timeline.violate(
                Rule.PING_UNANSWERED,
                f"ping {ping.timestamp} got no ping_pong within {self.timing.ping_timeout}s",
            )

    async def _settle_pings(self) -> None:
        """Give the last pings their full time before hanging up, so none escapes the check."""
        await self._wait_for(self.pings.idle, self.timing.ping_timeout)
        if not self.ended.is_set():
            self._flag_late_pings()

    # --- plumbing -----------------------------------------------------------------------

    async def _send(self, document: dict[str, Any]) -> None:
        if self.ended.is_set():
            return
        with suppress(ConnectionClosed):
            await self.ws.send(json.dumps(document, ensure_ascii=False))

    async def _wait_for(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set, the call ends, or ``seconds`` pass."""
        waiters = [asyncio.create_task(event.wait()), asyncio.create_task(self.ended.wait())]
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()

    async def _pause(self, seconds: float) -> None:
        delay = seconds * self.timing.pace
        if delay > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), delay)

    def _speaking_time(self, text: str) -> float:
        return min(len(text.split()) * SECONDS_PER_WORD, MAX_SPEAKING_S)

    async def _stop(self, reader: asyncio.Task[None]) -> None:
        self.ended.set()
        if self._keepalive is not None:
            self._keepalive.cancel()
        # Retell closes the socket when the call is over.
        await self.ws.close(NORMAL_CLOSURE)
        reader.cancel()
        await asyncio.gather(reader, *filter(None, [self._keepalive]), return_exceptions=True)
