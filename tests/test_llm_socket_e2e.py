"""The call socket end to end: daphne on a loopback port, a real WebSocket client, and a
fake OpenAI-compatible model streaming server-sent events on another loopback port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from bench.fake_model import CLIENT_CLOSED, Fail, FakeModel, Gate, StreamRecord, Text, ToolCall
from calls.models import CallEvent
from tests import llm_socket as retell
from tests.conftest import StartServer
from tests.llm_socket import answer_text, is_complete
from tests.servers import RunningServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 15  # seconds; a bound for a stuck test, never an asserted timing
TOKEN = "e2e-socket-token"


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeModel]:
    model = FakeModel(tokens=5).start()
    yield model
    model.stop()


@pytest.fixture(scope="module")
def socket_server(
    asgi_server_factory: StartServer, fake_model: FakeModel, tmp_path_factory: Any
) -> RunningServer:
    profile = retell.profile_file(tmp_path_factory.mktemp("profile"), transfer_number="+15550188")
    return asgi_server_factory(
        {
            "AGENT_RESPONDER": "openai",
            "AGENT_PROFILE_FILE": profile,
            "OPENAI_BASE_URL": fake_model.base_url,
            "OPENAI_API_KEY": "sk-fake",
            "OPENAI_MODEL": "fake-model",
            "LLM_ANSWER_TIMEOUT_MS": "5000",
            "LLM_END_CALL_CLOSE_MS": "100",
            "LLM_TRANSCRIPT_SAVE_INTERVAL_MS": "50",
            "LLM_SOCKET_MAX_FRAME_BYTES": "65536",
            "LLM_SOCKET_TOKEN": TOKEN,
        }
    )


class RetellSide:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []

    async def send(self, document: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(document))

    async def recv(self) -> dict[str, Any]:
        message = await asyncio.wait_for(self.connection.recv(), WAIT)
        assert isinstance(message, str), "the server must only send text frames"
        frame = json.loads(message)
        self.frames.append(frame)
        return frame

    async def answer(self, response_id: int) -> list[dict[str, Any]]:
        frames: list[dict[str, Any]] = []
        while not frames or not is_complete(frames[-1], response_id):
            frames.append(await self.recv())
        return frames

    async def opening(self) -> dict[str, Any]:
        assert (await self.recv())["response_type"] == "config"
        return await self.recv()


def socket_url(server: RunningServer, call_id: str, token: str = TOKEN) -> str:
    return f"{server.ws_url}/llm-websocket/{call_id}?token={token}"


@pytest.fixture
async def call(socket_server: RunningServer, request: Any) -> AsyncIterator[RetellSide]:
    call_id = f"call_e2e_{request.node.name[-40:]}"
    async with connect(socket_url(socket_server, call_id), proxy=None, open_timeout=WAIT) as ws:
        yield RetellSide(ws)
    # The server records the session once the socket has closed. Wait for it: the test
    # database is flushed after each test, and a flush racing that write can deadlock
    # on PostgreSQL.
    await session_event(call_id)


async def stream_for(model: FakeModel, match: str) -> StreamRecord:
    return await asyncio.to_thread(model.stream_for, match, WAIT)


async def ended(record: StreamRecord) -> str:
    return await asyncio.to_thread(record.wait_ended, WAIT)


async def session_event(call_id: str, count: int = 1) -> CallEvent:
    """The (last) session recorded for ``call_id``, once ``count`` of them are there."""
    sessions = CallEvent.objects.filter(call__call_id=call_id, event="llm_session")
    for _ in range(WAIT * 50):
        if await sessions.acount() >= count:
            event = await sessions.alast()
            assert event is not None
            return event
        await asyncio.sleep(0.02)
    raise AssertionError(f"no session recorded for {call_id}")


async def test_it_streams_a_model_answer_over_the_wire(call: RetellSide):
    begin = await call.opening()
    assert begin["content"] == "Hello! Thanks for calling. How can I help you today?"
    await call.send(retell.request(1, "tell me something"))
    frames = await call.answer(1)
    assert len(frames) == 6, "five streamed tokens, then the closing frame"
    assert answer_text(frames, 1) == "word0 word1 word2 word3 word4 "
    assert frames[-1] == {
        "response_type": "response",
        "response_id": 1,
        "content": "",
        "content_complete": True,
    }


async def test_an_interruption_stops_the_old_answer_and_closes_its_stream(
    call: RetellSide, fake_model: FakeModel
):
    fake_model.script("e2e interrupt me", Text("I think "), Gate("e2e-never"), Text("STALE"))
    await call.opening()
    await call.send(retell.request(1, "e2e interrupt me"))
    assert (await call.recv())["content"] == "I think "
    received_before = len(call.frames)
    await call.send(retell.request(2, "e2e sorry, go on"))
    later = await call.answer(2)
    assert [f for f in call.frames[received_before:] if f.get("response_id") == 1] == []
    assert "STALE" not in json.dumps(call.frames)
    assert answer_text(later, 2) == "word0 word1 word2 word3 word4 "
    assert await ended(await stream_for(fake_model, "e2e interrupt me")) == CLIENT_CLOSED


async def test_ping_pong_answers_while_the_model_is_thinking(
    call: RetellSide, fake_model: FakeModel
):
    fake_model.script("e2e slow thought", Gate("e2e-slow"))
    await call.opening()
    await call.send(retell.request(1, "e2e slow thought"))
    await stream_for(fake_model, "e2e slow thought")
    await call.send(retell.ping(1234))
    assert await call.recv() == {"response_type": "ping_pong", "timestamp": 1234}
    fake_model.open_gate("e2e-slow")
    assert is_complete((await call.answer(1))[-1], 1)


async def test_the_end_call_tool_sends_tool_frames_and_the_server_closes_with_1000(
    call: RetellSide, fake_model: FakeModel
):
    fake_model.script("e2e that's everything", ToolCall("end_call", {"message": "Goodbye!"}))
    await call.opening()
    await call.send(retell.request(1, "e2e that's everything"))
    frames = await call.answer(1)
    assert [frame["response_type"] for frame in frames[:2]] == [
        "tool_call_invocation",
        "tool_call_result",
    ]
    assert frames[0]["tool_call_id"] == frames[1]["tool_call_id"]
    assert answer_text(frames, 1) == "Goodbye!"
    assert frames[-1]["end_call"] is True
    with pytest.raises(ConnectionClosed):
        await call.recv()
    assert call.connection.close_code == 1000


async def test_the_transfer_tool_transfers_the_call(call: RetellSide, fake_model: FakeModel):
    fake_model.script("e2e a real person", ToolCall("transfer_call", {"message": "One moment."}))
    await call.opening()
    await call.send(retell.request(1, "e2e a real person"))
    frames = await call.answer(1)
    assert frames[0]["name"] == "transfer_call"
    assert frames[-1]["transfer_number"] == "+15550188"
    assert answer_text(frames, 1) == "One moment."


async def test_a_model_failure_speaks_the_fallback_and_completes(
    call: RetellSide, fake_model: FakeModel
):
    fake_model.script("e2e break the model", Fail(503))
    await call.opening()
    await call.send(retell.request(1, "e2e break the model"))
    (frame,) = await call.answer(1)
    assert frame["content"] == "Sorry, I didn't quite get that. Could you say it another way?"
    assert frame["content_complete"] is True


async def test_bad_frames_are_ignored_and_the_socket_stays_open(call: RetellSide):
    await call.opening()
    await call.connection.send(b"\x00binary")
    await call.connection.send("{not json")
    await call.send({"interaction_type": "telepathy"})
    await call.send(retell.request(1, "x" * 70_000))  # over LLM_SOCKET_MAX_FRAME_BYTES
    await call.send(retell.request(2, "tell me"))
    frames = await call.answer(2)
    assert {frame["response_id"] for frame in frames} == {2}


async def test_disconnecting_mid_answer_leaves_nothing_running(
    socket_server: RunningServer, fake_model: FakeModel
):
    fake_model.script("e2e going into a tunnel", Text("Sure, "), Gate("e2e-tunnel"))
    call_id = "call_e2e_disconnect"
    async with connect(socket_url(socket_server, call_id), proxy=None) as ws:
        side = RetellSide(ws)
        await side.opening()
        await side.send(retell.request(1, "e2e going into a tunnel"))
        assert (await side.recv())["content"] == "Sure, "
    assert await ended(await stream_for(fake_model, "e2e going into a tunnel")) == CLIENT_CLOSED
    event = await session_event(call_id)
    assert event.payload["turns"][0]["outcome"] == "disconnected"
    assert event.payload["closed_by"] == "client"


async def test_a_reconnect_to_the_same_call_picks_up_the_conversation(
    socket_server: RunningServer,
):
    call_id = "call_e2e_reconnect"
    async with connect(socket_url(socket_server, call_id), proxy=None) as ws:
        first = RetellSide(ws)
        assert (await first.opening())["content"]
        await first.send(retell.request(1, "tell me"))
        await first.answer(1)
    await session_event(call_id)
    async with connect(socket_url(socket_server, call_id), proxy=None) as ws:
        second = RetellSide(ws)
        begin = await second.opening()
        assert (begin["response_id"], begin["content"]) == (0, "")
        await second.send(retell.request(2, "tell me more"))
        assert is_complete((await second.answer(2))[-1], 2)
    await session_event(call_id, count=2)


async def test_a_socket_without_the_token_is_refused(socket_server: RunningServer):
    with pytest.raises(InvalidStatus) as refused:
        async with connect(socket_url(socket_server, "call_e2e_no_token", "wrong"), proxy=None):
            pass
    assert refused.value.response.status_code == 403


def test_the_server_log_has_no_transcript_text_and_no_crash(socket_server: RunningServer):
    log = Path(socket_server.log_path).read_text(errors="replace")
    assert "Traceback" not in log
    assert "e2e interrupt me" not in log
    assert "xxxxxxxx" not in log
