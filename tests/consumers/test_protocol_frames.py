"""The call socket's opening frames (config, the begin message) and ping_pong."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from bench.fake_model import FakeModel, Gate, Text
from calls.llm import records
from calls.models import AgentProfile
from tests import llm_socket as retell
from tests.consumers.helpers import WAIT, Retell
from tests.llm_socket import answer_text, is_complete

pytestmark = pytest.mark.django_db(transaction=True)


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
