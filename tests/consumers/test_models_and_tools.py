"""Answers from the model: failures, timeouts, dropped streams and its tool calls."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.fake_model import CLIENT_CLOSED, Drop, Fail, FakeModel, Gate, Text, ToolCall
from tests import llm_socket as retell
from tests.consumers.helpers import Retell, ended, stream_for
from tests.llm_socket import answer_text, is_complete

pytestmark = pytest.mark.django_db(transaction=True)


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
