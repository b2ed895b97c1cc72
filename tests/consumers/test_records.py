"""What a call socket writes: the live transcript while it runs, the session summary at its end."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bench.fake_model import FakeModel, Gate, Text, ToolCall
from calls.llm import records
from tests import llm_socket as retell
from tests.consumers.helpers import WAIT, Retell, call_row, last_said, session_events

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_live_transcript_is_written_throttled_and_at_the_end(
    settings: Any, monkeypatch: Any
):
    settings.LLM_TRANSCRIPT_SAVE_INTERVAL_MS = 60_000
    writes: list[Any] = []
    monkeypatch.setattr(records, "save_observation", lambda **kwargs: writes.append(kwargs))
    client = Retell()
    await client.connect()
    await client.opening()
    for n in range(5):
        await client.send(retell.update(f"line {n}"))
    await client.send(retell.ping())
    await client.recv()
    assert writes == [], "nothing is written before the interval has passed"
    await client.disconnect()
    call = await call_row()
    assert call is not None
    assert last_said(call) == "line 4"
    assert call.transcript.endswith("User: line 4\n")
    assert call.status == "ongoing"


async def test_transcript_writes_are_one_at_a_time_and_coalesce_to_the_latest(
    socket: Retell, monkeypatch: Any
):
    first_started = threading.Event()
    release = threading.Event()
    second_written = threading.Event()
    written: list[str] = []
    in_flight: list[int] = [0, 0]  # now, most ever

    def save(*, call_id: str, transcript: Any, call: Any = None) -> None:
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        first_started.set()
        release.wait(WAIT)
        written.append(transcript[-1]["content"])
        in_flight[0] -= 1
        if len(written) == 2:
            second_written.set()

    monkeypatch.setattr(records, "save_transcript", save)
    await socket.opening()
    await socket.send(retell.update("line 0"))
    assert await asyncio.to_thread(first_started.wait, WAIT)
    for n in range(1, 5):
        await socket.send(retell.update(f"line {n}"))
    await socket.send(retell.ping())
    await socket.recv()  # every update above has been handled
    release.set()
    assert await asyncio.to_thread(second_written.wait, WAIT)
    await socket.disconnect()
    assert written[0] == "line 0"
    assert written[-1] == "line 4", "the latest transcript is written"
    assert len(written) == 2, "the updates that arrived during the first write made one more"
    assert in_flight[1] == 1
    call = await call_row()
    assert call is not None
    assert last_said(call) == "line 4"


async def test_call_details_are_written_with_the_first_transcript_in_one_write(
    socket: Retell, monkeypatch: Any
):
    writes: list[tuple[Any, list[str]]] = []
    written = threading.Event()

    def save(*, call_id: str, transcript: Any, call: Any = None) -> None:
        writes.append((call, [line["content"] for line in transcript]))
        written.set()

    monkeypatch.setattr(records, "save_transcript", save)
    await socket.opening()
    await socket.send(retell.call_details(agent_id="agent_one"))
    await socket.send(retell.update("I need an appointment"))
    assert await asyncio.to_thread(written.wait, WAIT)
    await socket.disconnect()
    ((call, said),) = writes
    assert call is not None
    assert call["agent_id"] == "agent_one"
    assert said == ["Hello! How can I help?", "I need an appointment"]


async def test_the_session_is_recorded_with_per_turn_figures(openai: FakeModel):
    openai.script("interrupt this", Text("Um "), Gate("interrupt-gate"))
    openai.script("bye with tool", ToolCall("end_call", {"message": "Bye."}))
    client = Retell()
    await client.connect()
    await client.opening()
    await client.send(retell.call_details(agent_id="agent_rec", customer_name="Zoe"))
    await client.send(retell.request(1, "interrupt this"))
    await client.recv()
    await client.send(retell.request(2, "bye with tool"))
    await client.answer(2)
    assert await client.close_code() == 1000
    await client.disconnect(code=1000)
    (event,) = await session_events()
    summary = event.payload
    assert event.event == "llm_session"
    assert summary["close_code"] == 1000
    assert summary["closed_by"] == "server"
    assert summary["answers"] == 2
    assert summary["cancelled"] == 1
    assert summary["tool_calls"] == ["end_call"]
    first, second = summary["turns"]
    assert (first["response_id"], first["outcome"]) == (1, "cancelled")
    assert first["first_frame_ms"] is not None
    assert first["complete_ms"] is None
    assert (second["outcome"], second["action"]) == ("complete", "end_call")
    assert second["complete_ms"] >= second["first_frame_ms"]
    call = await call_row()
    assert call is not None
    assert call.agent_id == "agent_rec"
    assert call.dynamic_variables == {"customer_name": "Zoe"}
    assert last_said(call) == "bye with tool"
