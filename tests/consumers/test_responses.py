"""Answers to response_required and reminder_required; a newer request cancels an older one."""

from __future__ import annotations

from typing import Any

import pytest

from bench.fake_model import CLIENT_CLOSED, FakeModel, Gate, Text
from tests import llm_socket as retell
from tests.consumers.helpers import Retell, call_row, ended, last_said, stream_for
from tests.llm_socket import answer_text, is_complete

pytestmark = pytest.mark.django_db(transaction=True)


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
