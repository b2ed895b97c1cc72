"""Fixtures for the call socket tests: socket settings, the fake model, a connected socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bench.fake_model import FakeModel
from tests import llm_socket as retell
from tests.consumers.helpers import Retell


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
