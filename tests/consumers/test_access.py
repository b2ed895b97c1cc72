"""Who may open a call socket: token, address allowlist, no Origin check, routing."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from retellhub.asgi import application
from tests.consumers.helpers import WAIT, Retell

pytestmark = pytest.mark.django_db(transaction=True)


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
