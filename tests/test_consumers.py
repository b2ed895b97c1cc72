"""The call socket through the real ASGI application, with Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from channels.generic import websocket as channels_websocket
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY

from bench.fake_model import (
    CLIENT_CLOSED,
    Drop,
    Fail,
    FakeModel,
    Gate,
    StreamRecord,
    Text,
    ToolCall,
)
from calls.consumers import LiveCallsConsumer
from calls.llm import records
from calls.models import AgentProfile, Call, CallEvent
from calls.realtime import CALLS_GROUP
from retellhub.asgi import application
from tests import llm_socket as retell
from tests.llm_socket import CALL_ID, answer_text, is_complete

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds a frame may take under a loaded CI box; never asserted as a timing


class Retell:
    """Retell's side of one socket."""

    def __init__(self, call_id: str = CALL_ID, query: str = "", headers: Any = None) -> None:
        self.communicator = WebsocketCommunicator(
            application, f"/llm-websocket/{call_id}{query}", headers=headers or []
        )
        self.frames: list[dict[str, Any]] = []

    async def connect(self) -> tuple[bool, Any]:
        return await self.communicator.connect(timeout=WAIT)

    async def send(self, document: dict[str, Any]) -> None:
        await self.communicator.send_json_to(document)

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def recv(self) -> dict[str, Any]:
        output = await self.communicator.receive_output(WAIT)
        assert output["type"] == "websocket.send", output
        assert "bytes" not in output, "only text frames may be sent"
        frame = json.loads(output["text"])
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Any) -> list[dict[str, Any]]:
        """Frames up to and including the first that satisfies ``predicate``."""
        seen = []
        while True:
            frame = await self.recv()
            seen.append(frame)
            if predicate(frame):
                return seen

    async def answer(self, response_id: int) -> list[dict[str, Any]]:
        return await self.until(lambda frame: is_complete(frame, response_id))

    async def opening(self) -> tuple[dict[str, Any], dict[str, Any]]:
        config = await self.recv()
        begin = await self.recv()
        return config, begin

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def close_code(self) -> int:
        output = await self.communicator.receive_output(WAIT)
        assert output["type"] == "websocket.close", output
        return int(output.get("code", 1000))

    async def disconnect(self, code: int = 1000) -> None:
        await self.communicator.disconnect(code=code, timeout=WAIT)


@pytest.fixture(autouse=True)
def _socket_settings(settings: Any) -> None:
    settings.AGENT_RESPONDER = "scripted"
    settings.AGENT_PROFILE_FILE = retell.default_profile_path()
    settings.LLM_ANSWER_TIMEOUT_MS = 5000
    settings.LLM_CALL_DETAILS_WAIT_MS = 5000
    settings.LLM_END_CALL_CLOSE_MS = 50
    settings.LLM_TRANSCRIPT_SAVE_INTERVAL_MS = 20
    settings.LLM_SOCKET_TOKEN = ""
    settings.LLM_SOCKET_ALLOWED_IPS = []


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeModel]:
    model = FakeModel(tokens=4).start()
    yield model
    model.stop()


@pytest.fixture
def openai(settings: Any, fake_model: FakeModel) -> FakeModel:
    settings.AGENT_RESPONDER = "openai"
    settings.OPENAI_BASE_URL = fake_model.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODEL = "fake-model"
    return fake_model


@pytest.fixture
async def socket() -> AsyncIterator[Retell]:
    client = Retell()
    connected, _ = await client.connect()
    assert connected
    yield client
    await client.disconnect()


async def stream_for(model: FakeModel, match: str) -> StreamRecord:
    # The fake model's lookup blocks while it waits; keep the event loop free meanwhile.
    return await asyncio.to_thread(model.stream_for, match)


async def ended(record: StreamRecord) -> str:
    return await asyncio.to_thread(record.wait_ended)


def last_said(call: Call) -> str:
    transcript = call.transcript_object or []
    return str(transcript[-1]["content"]) if transcript else ""


def session_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("llm-")]


async def call_row(call_id: str = CALL_ID) -> Call | None:
    return await Call.objects.filter(call_id=call_id).afirst()


async def session_events(call_id: str = CALL_ID) -> list[CallEvent]:
    return [event async for event in CallEvent.objects.filter(call__call_id=call_id)]


# --- opening -------------------------------------------------------------------------------


async def test_it_sends_config_then_the_begin_message(socket: Retell):
    config, begin = await socket.opening()
    assert config == {
        "response_type": "config",
        "config": {"auto_reconnect": True, "call_details": True},
    }
    assert begin == {
        "response_type": "response",
        "response_id": 0,
        "content": "Hello! Thanks for calling. How can I help you today?",
        "content_complete": True,
    }


async def test_it_holds_the_begin_message_until_call_details_when_the_greeting_needs_them(
    settings: Any, tmp_path: Any
):
    settings.AGENT_PROFILE_FILE = retell.profile_file(
        tmp_path, begin_message="Hi {{customer_name}}, calling from {{from_number}}?"
    )
    client = Retell()
    await client.connect()
    assert (await client.recv())["response_type"] == "config"
    assert await client.nothing(), "the greeting must wait for the call's data"
    await client.send(retell.call_details(customer_name="Ada"))
    begin = await client.recv()
    assert begin["response_id"] == 0
    assert begin["content"] == "Hi Ada, calling from +15550001111?"
    await client.disconnect()


async def test_the_held_greeting_goes_out_without_call_details_after_the_wait(
    settings: Any, tmp_path: Any
):
    settings.LLM_CALL_DETAILS_WAIT_MS = 50
    settings.AGENT_PROFILE_FILE = retell.profile_file(
        tmp_path, begin_message="Hi {{customer_name}}, welcome."
    )
    client = Retell()
    await client.connect()
    _, begin = await client.opening()
    assert begin["content"] == "Hi , welcome."  # an unknown variable is never read aloud
    await client.disconnect()


async def test_it_answers_with_the_profile_of_the_calls_agent():
    await AgentProfile.objects.acreate(
        agent_id="agent_dental",
        name="Dental office",
        begin_message="Smile Dental, this is Sam.",
        rules=[{"keywords": ["hours"], "reply": "Eight to four."}],
    )
    client = Retell()
    await client.connect()
    assert (await client.recv())["response_type"] == "config"
    assert await client.nothing(), "with per-agent profiles the greeting waits for the agent"
    await client.send(retell.call_details(agent_id="agent_dental"))
    assert (await client.recv())["content"] == "Smile Dental, this is Sam."
    await client.send(retell.request(1, "what are your hours?"))
    assert answer_text(await client.answer(1), 1) == "Eight to four."
    await client.disconnect()


async def test_an_unknown_agent_gets_the_default_profile():
    await AgentProfile.objects.acreate(agent_id="agent_other", begin_message="Other.")
    client = Retell()
    await client.connect()
    await client.recv()
    await client.send(retell.call_details(agent_id="agent_unknown"))
    assert (await client.recv())["content"].startswith("Hello! Thanks for calling.")
    await client.disconnect()


# --- ping_pong -----------------------------------------------------------------------------


async def test_it_answers_ping_pong_with_retells_timestamp(socket: Retell):
    await socket.opening()
    await socket.send(retell.ping(1_700_000_000_999))
    assert await socket.recv() == {"response_type": "ping_pong", "timestamp": 1_700_000_000_999}


async def test_ping_pong_is_answered_while_an_answer_is_being_generated(
    socket: Retell, openai: FakeModel
):
    openai.script("ping me while you think", Text("Let me see. "), Gate("ping-gate"))
    await socket.opening()
    await socket.send(retell.request(1, "ping me while you think"))
    assert (await socket.recv())["content"] == "Let me see. "
    await socket.send(retell.ping(42))
    assert await socket.recv() == {"response_type": "ping_pong", "timestamp": 42}
    openai.open_gate("ping-gate")
    assert is_complete((await socket.answer(1))[-1], 1)


async def test_ping_pong_is_answered_while_a_database_write_is_stuck(
    socket: Retell, monkeypatch: Any
):
    stuck = threading.Event()
    release = threading.Event()
    saved = threading.Event()
    save = records.save_observation

    def slow_save(**kwargs: Any) -> None:
        stuck.set()
        release.wait(WAIT)
        save(**kwargs)
        saved.set()

    monkeypatch.setattr(records, "save_observation", slow_save)
    await socket.opening()
    await socket.send(retell.update("hello there"))
    assert await asyncio.to_thread(stuck.wait, WAIT)
    await socket.send(retell.ping(7))
    assert await socket.recv() == {"response_type": "ping_pong", "timestamp": 7}
    await socket.send(retell.request(1, "what are your hours?"))
    assert is_complete((await socket.answer(1))[-1], 1)
    release.set()
    assert await asyncio.to_thread(saved.wait, WAIT)


# --- answers -------------------------------------------------------------------------------


async def test_a_response_is_streamed_and_ends_with_content_complete(socket: Retell):
    await socket.opening()
    await socket.send(retell.request(1, "What are your opening hours?"))
    frames = await socket.answer(1)
    assert len(frames) > 2, "streamed in several chunks"
    assert all(frame["response_type"] == "response" for frame in frames)
    assert [frame["content_complete"] for frame in frames] == [False] * (len(frames) - 1) + [True]
    assert answer_text(frames, 1) == "We're open Monday to Friday, nine to five."


async def test_reminder_required_speaks_the_reminder_line(socket: Retell):
    await socket.opening()
    await socket.send(retell.request(1, "hmm", kind="reminder_required"))
    frames = await socket.answer(1)
    assert answer_text(frames, 1) == (
        "Are you still there? Take your time; I'm here when you're ready."
    )


async def test_the_scripted_fallback_answers_what_no_rule_matches(socket: Retell):
    await socket.opening()
    await socket.send(retell.request(1, "Tell me about quantum chromodynamics"))
    assert answer_text(await socket.answer(1), 1) == (
        "Sorry, I didn't quite get that. Could you say it another way?"
    )


async def test_a_scripted_end_call_phrase_ends_the_call_and_closes_with_1000(socket: Retell):
    await socket.opening()
    await socket.send(retell.request(1, "That's all, goodbye"))
    frames = await socket.answer(1)
    assert answer_text(frames, 1) == "Thanks for calling. Have a great day, goodbye!"
    assert frames[-1]["end_call"] is True
    assert await socket.close_code() == 1000


async def test_a_scripted_rule_can_transfer_or_press_a_digit(settings: Any, tmp_path: Any):
    settings.AGENT_PROFILE_FILE = retell.profile_file(
        tmp_path,
        rules=[
            {"keywords": ["human"], "reply": "Transferring.", "transfer_number": "+15550100"},
            {"keywords": ["menu"], "reply": "", "digit_to_press": "3"},
        ],
    )
    client = Retell()
    await client.connect()
    await client.opening()
    await client.send(retell.request(1, "a human please"))
    assert (await client.answer(1))[-1]["transfer_number"] == "+15550100"
    await client.send(retell.request(2, "the menu"))
    assert (await client.answer(2))[-1]["digit_to_press"] == "3"
    await client.disconnect()


async def test_update_only_keeps_the_transcript_and_never_cancels_an_answer(
    socket: Retell, openai: FakeModel
):
    openai.script("slow answer", Text("One "), Gate("update-gate"), Text("two."))
    await socket.opening()
    await socket.send(retell.request(1, "slow answer"))
    await socket.recv()
    await socket.send(retell.update("slow answer, and more"))
    openai.open_gate("update-gate")
    frames = await socket.answer(1)
    assert answer_text(socket.frames, 1) == "One two."
    assert is_complete(frames[-1], 1)
    await socket.disconnect()
    call = await call_row()
    assert call is not None
    assert last_said(call) == "slow answer, and more"


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


# --- cancellation --------------------------------------------------------------------------


async def test_a_newer_response_id_cancels_the_older_answer(socket: Retell, openai: FakeModel):
    openai.script("first question", Text("Well, "), Gate("never-opened"), Text("stale words"))
    await socket.opening()
    await socket.send(retell.request(1, "first question"))
    assert (await socket.recv())["content"] == "Well, "
    sent_before = len(socket.frames)
    await socket.send(retell.request(2, "second question"))
    frames = await socket.answer(2)
    assert [frame for frame in frames if frame.get("response_id") == 1] == []
    assert answer_text(frames, 2) == "word0 word1 word2 word3 "
    record = await stream_for(openai, "first question")
    assert await ended(record) == CLIENT_CLOSED
    assert await socket.nothing()
    assert len(socket.frames) == sent_before + len(frames)


async def test_a_newer_request_cancels_an_answer_that_has_not_sent_anything(
    socket: Retell, openai: FakeModel
):
    openai.script("think long", Gate("long-think"))
    await socket.opening()
    await socket.send(retell.request(1, "think long"))
    record = await stream_for(openai, "think long")
    await socket.send(retell.request(2, "actually never mind"))
    frames = await socket.answer(2)
    assert {frame["response_id"] for frame in frames} == {2}
    assert await ended(record) == CLIENT_CLOSED


async def test_a_request_before_the_greeting_went_out_suppresses_the_stale_greeting(
    settings: Any, tmp_path: Any
):
    settings.AGENT_PROFILE_FILE = retell.profile_file(tmp_path, begin_message="Hi {{name}}")
    client = Retell()
    await client.connect()
    await client.recv()  # config; the greeting waits for call_details
    await client.send(retell.request(1, "what are your hours?"))
    await client.send(retell.call_details(name="Bo"))
    frames = await client.answer(1)
    assert 0 not in {frame["response_id"] for frame in frames}
    await client.disconnect()


async def test_duplicate_and_out_of_order_requests_are_ignored(socket: Retell):
    await socket.opening()
    await socket.send(retell.request(2, "what are your hours?"))
    first = await socket.answer(2)
    await socket.send(retell.request(2, "what are your hours?"))
    await socket.send(retell.request(1, "where are you?"))
    assert await socket.nothing(), "a duplicate or an older id gets no answer"
    await socket.send(retell.request(3, "where are you?"))
    later = await socket.answer(3)
    assert {frame["response_id"] for frame in first + later} == {2, 3}


# --- models and tools ----------------------------------------------------------------------


async def test_model_failure_speaks_the_fallback_and_completes(socket: Retell, openai: FakeModel):
    openai.script("make it fail", Fail(500))
    await socket.opening()
    await socket.send(retell.request(1, "make it fail"))
    frames = await socket.answer(1)
    assert frames == [
        {
            "response_type": "response",
            "response_id": 1,
            "content": "Sorry, I didn't quite get that. Could you say it another way?",
            "content_complete": True,
        }
    ]


async def test_model_timeout_speaks_the_fallback_and_closes_the_stream(
    settings: Any, socket: Retell, openai: FakeModel
):
    settings.LLM_ANSWER_TIMEOUT_MS = 200
    openai.script("take forever", Gate("forever"))
    await socket.opening()
    await socket.send(retell.request(1, "take forever"))
    frames = await socket.answer(1)
    assert answer_text(frames, 1).startswith("Sorry, I didn't quite get that.")
    record = await stream_for(openai, "take forever")
    assert await ended(record) == CLIENT_CLOSED


async def test_a_stream_dropped_mid_answer_still_completes_without_a_fallback(
    socket: Retell, openai: FakeModel
):
    openai.script("drop me", Text("Half an "), Drop())
    await socket.opening()
    await socket.send(retell.request(1, "drop me"))
    frames = await socket.answer(1)
    assert answer_text(frames, 1) == "Half an "
    assert frames[-1] == {
        "response_type": "response",
        "response_id": 1,
        "content": "",
        "content_complete": True,
    }


async def test_the_model_sees_the_system_prompt_and_the_transcript(
    settings: Any, tmp_path: Any, openai: FakeModel
):
    settings.AGENT_PROFILE_FILE = retell.profile_file(
        tmp_path, system_prompt="You work for {{business}}.", temperature=0.2
    )
    client = Retell()
    await client.connect()
    await client.recv()
    await client.send(retell.call_details(business="Acme"))
    await client.recv()
    await client.send(retell.request(1, "who are you?"))
    await client.answer(1)
    request = (await stream_for(openai, "who are you?")).request
    assert request["messages"] == [
        {"role": "system", "content": "You work for Acme."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "who are you?"},
    ]
    assert request["stream"] is True
    assert request["temperature"] == 0.2
    assert request["model"] == "fake-model"
    assert {tool["function"]["name"] for tool in request["tools"]} == {"end_call", "press_digit"}
    await client.disconnect()


async def test_the_end_call_tool_says_goodbye_ends_the_call_and_closes_with_1000(
    socket: Retell, openai: FakeModel
):
    openai.script("I'm done", ToolCall("end_call", {"message": "Bye for now!"}))
    await socket.opening()
    await socket.send(retell.request(1, "I'm done"))
    frames = await socket.answer(1)
    invocation, result, *speech = frames
    assert invocation["response_type"] == "tool_call_invocation"
    assert invocation["name"] == "end_call"
    assert json.loads(invocation["arguments"]) == {"message": "Bye for now!"}
    assert result == {
        "response_type": "tool_call_result",
        "tool_call_id": invocation["tool_call_id"],
        "content": "Call ended.",
        "successful": True,
    }
    assert answer_text(speech, 1) == "Bye for now!"
    assert speech[-1]["end_call"] is True
    assert await socket.close_code() == 1000


async def test_the_caller_talking_over_the_goodbye_keeps_the_call_open(
    settings: Any, socket: Retell, openai: FakeModel
):
    settings.LLM_END_CALL_CLOSE_MS = 60_000
    openai.script("bye then", ToolCall("end_call", {"message": "Bye!"}))
    await socket.opening()
    await socket.send(retell.request(1, "bye then"))
    assert (await socket.answer(1))[-1]["end_call"] is True
    await socket.send(retell.request(2, "wait, one more thing"))
    assert is_complete((await socket.answer(2))[-1], 2)
    assert await socket.nothing()


async def test_the_transfer_tool_transfers_to_the_profiles_number(
    settings: Any, tmp_path: Any, openai: FakeModel
):
    settings.AGENT_PROFILE_FILE = retell.profile_file(tmp_path, transfer_number="+15550199")
    openai.script("a person please", ToolCall("transfer_call", {"message": "Connecting you."}))
    client = Retell()
    await client.connect()
    await client.opening()
    await client.send(retell.request(1, "a person please"))
    frames = await client.answer(1)
    assert [frame["response_type"] for frame in frames[:2]] == [
        "tool_call_invocation",
        "tool_call_result",
    ]
    assert answer_text(frames, 1) == "Connecting you."
    assert frames[-1]["transfer_number"] == "+15550199"
    assert "end_call" not in frames[-1]
    await client.disconnect()


async def test_the_press_digit_tool_presses_a_digit(socket: Retell, openai: FakeModel):
    openai.script("press one for sales", ToolCall("press_digit", {"digit": "1"}))
    await socket.opening()
    await socket.send(retell.request(1, "press one for sales"))
    frames = await socket.answer(1)
    assert frames[-1]["digit_to_press"] == "1"
    assert frames[1]["successful"] is True


async def test_an_invalid_tool_call_is_reported_unsuccessful(socket: Retell, openai: FakeModel):
    openai.script("press banana", ToolCall("press_digit", {"digit": "banana"}))
    await socket.opening()
    await socket.send(retell.request(1, "press banana"))
    frames = await socket.answer(1)
    assert frames[1]["successful"] is False
    assert "digit_to_press" not in frames[-1]


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not_json"),
        ("[1, 2]", "not_object"),
        ('{"interaction_type": "telepathy"}', "unknown_interaction_type"),
        ('{"no_type": true}', "unknown_interaction_type"),
        ('{"interaction_type": "response_required", "response_id": "1"}', "bad_response_id"),
        ('{"interaction_type": "response_required", "response_id": true}', "bad_response_id"),
        ('{"interaction_type": "response_required", "response_id": 0}', "bad_response_id"),
        ('{"interaction_type": "update_only", "transcript": "a string"}', "bad_transcript"),
        ('{"interaction_type": "call_details", "call": []}', "bad_call"),
        ('{"interaction_type": "ping_pong"}', "bad_timestamp"),
    ],
)
async def test_a_malformed_frame_is_logged_without_content_and_ignored(
    socket: Retell, caplog: Any, raw: str, reason: str
):
    await socket.opening()
    secret = raw + " my card number is 4111"
    with caplog.at_level("WARNING", logger="calls"):
        await socket.send_raw(text=raw)
        await socket.send_raw(text=secret)
        await socket.send(retell.ping(5))
        assert await socket.recv() == {"response_type": "ping_pong", "timestamp": 5}
    assert reason in caplog.text
    assert "4111" not in caplog.text


async def test_binary_and_oversized_frames_are_ignored_and_the_socket_stays_open(
    settings: Any, caplog: Any
):
    settings.LLM_SOCKET_MAX_FRAME_BYTES = 1000
    client = Retell()
    await client.connect()
    await client.opening()
    with caplog.at_level("WARNING", logger="calls"):
        await client.send_raw(data=b"\x00\x01binary")
        await client.send(retell.request(1, "é" * 600))  # 1200 bytes in UTF-8
        await client.send(retell.request(2, "what are your hours?"))
        frames = await client.answer(2)
    assert {frame["response_id"] for frame in frames} == {2}
    assert "binary" in caplog.text
    assert "oversized" in caplog.text
    assert "éé" not in caplog.text
    await client.disconnect()


async def test_a_responder_crash_still_completes_the_answer(socket: Retell, monkeypatch: Any):
    from calls.llm.responders import scripted

    def broken(context: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(scripted, "scripted_reply", broken)
    await socket.opening()
    await socket.send(retell.request(1, "hello"))
    frames = await socket.answer(1)
    assert frames[-1]["content"].startswith("Sorry")
    await socket.send(retell.ping(9))
    assert (await socket.recv())["response_type"] == "ping_pong"


# --- connection lifecycle ------------------------------------------------------------------


async def test_disconnecting_mid_answer_cancels_every_task_and_closes_the_stream(
    openai: FakeModel,
):
    openai.script("hang up on me", Text("So "), Gate("hang-up-gate"))
    client = Retell()
    await client.connect()
    await client.opening()
    await client.send(retell.request(1, "hang up on me"))
    await client.recv()
    assert session_tasks(), "the answer is being generated"
    await client.disconnect(code=1001)
    assert session_tasks() == []
    record = await stream_for(openai, "hang up on me")
    assert await ended(record) == CLIENT_CLOSED
    (event,) = await session_events()
    assert event.source == "llm_socket"
    assert event.payload["close_code"] == 1001
    assert event.payload["turns"][0]["outcome"] == "disconnected"


class LeavingServer:
    """A server's side of one socket that, like uvicorn, raises on a send once the client
    has gone (ASGI 2.4 allows it: ``ClientDisconnected``, an ``OSError``) and queues
    ``websocket.disconnect`` for the application to read."""

    def __init__(self, path: str = f"/llm-websocket/{CALL_ID}", app: Any = application) -> None:
        self.app = app
        self.inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames: list[dict[str, Any]] = []
        self.opened = asyncio.Event()  # the begin message (or any frame on other sockets)
        self.refused = asyncio.Event()  # a send after the client had gone
        self.gone = False
        self.closed = False
        self.read_before_close: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {
            "type": "websocket", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [], "subprotocols": [], "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }  # fmt: skip

    def run(self) -> asyncio.Task[None]:
        self.inbound.put_nowait({"type": "websocket.connect"})
        return asyncio.create_task(self.app(self.scope, self.inbound.get, self.send))

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone:
            self.refused.set()
            raise OSError("client disconnected")
        if self.closed:
            raise RuntimeError(f"Unexpected ASGI message {message['type']!r} after a close")
        if message["type"] == "websocket.close":
            self.closed = True
            for frame in self.read_before_close:  # arrived just before, not yet read
                self.client_sent(frame)
            self.inbound.put_nowait({"type": "websocket.disconnect", "code": message["code"]})
        if message["type"] == "websocket.send":
            self.frames.append(json.loads(message["text"]))
            if self.frames[-1].get("response_id", 0) == 0:
                self.opened.set()

    def client_sent(self, document: dict[str, Any]) -> None:
        self.inbound.put_nowait({"type": "websocket.receive", "text": json.dumps(document)})


def sockets_open() -> float | None:
    return REGISTRY.get_sample_value("retellhub_llm_sockets_open")


async def test_a_client_that_pings_and_hangs_up_at_once_still_ends_the_session():
    # Retell's ping and close frame arrive together: the server has lost the connection
    # (and queued websocket.disconnect) before the application answers the ping.
    before = sockets_open()
    server = LeavingServer()
    app = server.run()
    await asyncio.wait_for(server.opened.wait(), WAIT)
    server.gone = True
    server.client_sent(retell.ping())
    server.inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(app, WAIT)
    assert session_tasks() == []
    assert sockets_open() == before
    (event,) = await session_events()
    assert (event.payload["close_code"], event.payload["closed_by"]) == (1000, "client")


async def test_a_ping_queued_behind_the_servers_close_gets_no_pong():
    # After an end_call the server closes; like uvicorn, this server refuses anything sent
    # after that, while a ping the caller sent just before still waits to be read.
    server = LeavingServer()
    server.read_before_close.append(retell.ping())
    app = server.run()
    await asyncio.wait_for(server.opened.wait(), WAIT)
    server.client_sent(retell.request(1, "That's all, goodbye"))
    await asyncio.wait_for(app, WAIT)
    assert server.closed
    assert not any(frame["response_type"] == "ping_pong" for frame in server.frames)
    (event,) = await session_events()
    assert (event.payload["close_code"], event.payload["closed_by"]) == (1000, "server")


async def test_a_socket_whose_application_is_cancelled_still_records_its_session():
    before = sockets_open()
    server = LeavingServer()
    app = server.run()
    await asyncio.wait_for(server.opened.wait(), WAIT)
    app.cancel()
    with pytest.raises(asyncio.CancelledError):
        await app
    assert session_tasks() == []
    assert sockets_open() == before
    (event,) = await session_events()
    assert event.payload["close_code"] == 1006


async def test_closing_a_socket_makes_no_trip_through_the_sync_thread(
    socket: Retell, monkeypatch: Any
):
    trips: list[str] = []

    async def close_old_connections() -> None:
        trips.append("close_old_connections")

    monkeypatch.setattr(channels_websocket, "aclose_old_connections", close_old_connections)
    await socket.opening()
    await socket.disconnect()
    assert trips == []
    assert len(await session_events()) == 1


async def test_a_live_viewer_who_left_is_still_taken_out_of_its_group(settings: Any):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    server = LeavingServer("/ws/calls/", app=LiveCallsConsumer.as_asgi())
    server.scope.update(
        url_route={"kwargs": {}}, user=SimpleNamespace(is_active=True, is_staff=True)
    )
    app = server.run()
    await asyncio.wait_for(server.opened.wait(), WAIT)  # the snapshot
    server.gone = True
    await layer.group_send(CALLS_GROUP, {"type": "call.update", "call": {"call_id": CALL_ID}})
    await asyncio.wait_for(server.refused.wait(), WAIT)
    server.inbound.put_nowait({"type": "websocket.disconnect", "code": 1001})
    await asyncio.wait_for(app, WAIT)
    assert not layer.groups.get(CALLS_GROUP)


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


async def test_a_reconnect_to_the_same_call_works_and_does_not_greet_twice():
    first = Retell()
    await first.connect()
    _, begin = await first.opening()
    assert begin["content"]
    await first.send(retell.request(1, "what are your hours?"))
    await first.answer(1)
    await first.disconnect(code=1006)

    second = Retell()
    assert (await second.connect())[0]
    config, begin = await second.opening()
    assert config["response_type"] == "config"
    assert (begin["response_id"], begin["content"], begin["content_complete"]) == (0, "", True)
    await second.send(retell.request(2, "where are you located?"))
    frames = await second.answer(2)
    assert answer_text(frames, 2).startswith("We're at 12 Market Street")
    await second.disconnect()
    assert len(await session_events()) == 2
    assert await Call.objects.filter(call_id=CALL_ID).acount() == 1


# --- access --------------------------------------------------------------------------------


async def test_a_wrong_or_missing_token_is_refused_before_accept(settings: Any):
    settings.LLM_SOCKET_TOKEN = "s3cret-token"
    for query in ("", "?token=wrong"):
        client = Retell(query=query)
        assert await client.connect() == (False, 1000)
    client = Retell(query="?token=s3cret-token")
    assert (await client.connect())[0]
    await client.disconnect()


async def test_an_address_outside_the_allowlist_is_refused_before_accept(settings: Any):
    settings.LLM_SOCKET_ALLOWED_IPS = ["100.20.5.228"]
    settings.TRUSTED_PROXY_COUNT = 1
    refused = Retell(headers=[(b"x-forwarded-for", b"203.0.113.9")])
    assert (await refused.connect())[0] is False
    allowed = Retell(headers=[(b"x-forwarded-for", b"100.20.5.228")])
    assert (await allowed.connect())[0] is True
    await allowed.disconnect()


async def test_no_origin_header_is_needed():
    """Retell's client sends no Origin; an origin check would lock it out."""
    client = Retell(headers=[])
    assert (await client.connect())[0]
    await client.disconnect()


async def test_other_paths_are_not_routed():
    communicator = WebsocketCommunicator(application, "/llm-websocket/")
    with pytest.raises(ValueError, match="No route found"):
        await communicator.connect(timeout=WAIT)
