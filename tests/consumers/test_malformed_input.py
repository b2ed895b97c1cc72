"""Frames the socket cannot use are logged without their content and ignored."""

from __future__ import annotations

from typing import Any

import pytest

from tests import llm_socket as retell
from tests.consumers.helpers import Retell

pytestmark = pytest.mark.django_db(transaction=True)


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
