"""Hanging up, being cancelled and reconnecting: every task ends and the session is recorded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from channels.generic import websocket as channels_websocket
from channels.layers import get_channel_layer

from bench.fake_model import CLIENT_CLOSED, FakeModel, Gate, Text
from calls.consumers import LiveCallsConsumer
from calls.models import Call
from calls.realtime import CALLS_GROUP
from tests import llm_socket as retell
from tests.consumers.helpers import WAIT, Retell, ended, session_events, session_tasks, stream_for
from tests.consumers.leaving_server import LeavingServer, sockets_open
from tests.llm_socket import CALL_ID, answer_text

pytestmark = pytest.mark.django_db(transaction=True)


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
