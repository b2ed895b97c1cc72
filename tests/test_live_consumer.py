"""The live monitor's socket through the real ASGI application (WebsocketCommunicator):
who may connect, what the snapshot holds, which groups hear which writes, after commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction

from calls.llm import records
from calls.payloads import parse_webhook
from calls.services import call_event_record
from retellhub.asgi import application
from tests.factories import CallFactory
from tests.live import conversation, session_cookie, webhook_body

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 10  # seconds; a bound for a stuck test, never an asserted timing
ORIGIN = "http://127.0.0.1:8000"


def socket(path: str, *, cookie: str | None, origin: str | None = ORIGIN) -> WebsocketCommunicator:
    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


@pytest.fixture
async def staff_cookie() -> str:
    return await database_sync_to_async(session_cookie)()


@pytest.fixture
async def opened(staff_cookie: str) -> AsyncIterator[Any]:
    """Open live sockets as a staff member; every one is closed after the test."""
    sockets: list[WebsocketCommunicator] = []

    async def open_socket(path: str = "/ws/calls/") -> WebsocketCommunicator:
        communicator = socket(path, cookie=staff_cookie)
        connected, _ = await communicator.connect(timeout=WAIT)
        assert connected
        sockets.append(communicator)
        return communicator

    yield open_socket
    for communicator in sockets:
        await communicator.disconnect()


async def receive(communicator: WebsocketCommunicator) -> dict[str, Any]:
    return await communicator.receive_json_from(timeout=WAIT)


async def deliver(event: str, call_id: str, **call: Any) -> None:
    """Store a webhook delivery the way the view does: one transaction, in a thread."""
    body = webhook_body(event, call_id, **call)
    await database_sync_to_async(call_event_record)(
        event=parse_webhook(body), raw_body=body, source_ip="127.0.0.1", key_fingerprint="test"
    )


async def say(call_id: str, *lines: str) -> None:
    """What the call socket writes for a transcript (calls/llm/records.py)."""
    fields = records.socket_fields(call=None, transcript=conversation(*lines))
    await database_sync_to_async(records.save_observation)(call_id=call_id, fields=fields)


# --- who may connect --------------------------------------------------------------------


async def test_it_refuses_anonymous_visitors():
    connected, _ = await socket("/ws/calls/", cookie=None).connect(timeout=WAIT)
    assert not connected


async def test_it_refuses_signed_in_users_who_are_not_staff():
    cookie = await database_sync_to_async(session_cookie)(staff=False)
    connected, _ = await socket("/ws/calls/", cookie=cookie).connect(timeout=WAIT)
    assert not connected


@pytest.mark.parametrize("origin", ["https://evil.example", None])
async def test_it_refuses_other_origins_and_none(staff_cookie, origin):
    communicator = socket("/ws/calls/", cookie=staff_cookie, origin=origin)
    connected, _ = await communicator.connect(timeout=WAIT)
    assert not connected


async def test_the_call_socket_still_takes_retell_without_origin_or_cookie():
    communicator = WebsocketCommunicator(application, "/llm-websocket/call_no_origin")
    connected, _ = await communicator.connect(timeout=WAIT)
    assert connected
    assert (await communicator.receive_json_from(timeout=WAIT))["response_type"] == "config"
    await communicator.disconnect()


# --- snapshot and groups ----------------------------------------------------------------


async def test_it_opens_with_calls_in_progress_and_the_last_finished(opened):
    await database_sync_to_async(CallFactory)(call_id="call_old_done")
    await database_sync_to_async(CallFactory)(call_id="call_talking", status="ongoing")
    snapshot = await receive(await opened())
    assert snapshot["type"] == "snapshot"
    assert [call["call_id"] for call in snapshot["calls"]] == ["call_talking", "call_old_done"]
    assert [call["finished"] for call in snapshot["calls"]] == [False, True]


async def test_a_calls_page_opens_with_its_whole_transcript(opened):
    lines = [f"line {n}" for n in range(10)]
    await say("call_whole", *lines)
    snapshot = await receive(await opened("/ws/calls/call_whole/"))
    (call,) = snapshot["calls"]
    assert [turn["content"] for turn in call["turns"]] == lines


async def test_a_committed_write_reaches_the_list_and_that_calls_page_only(opened):
    listing, page, other = (
        await opened(),
        await opened("/ws/calls/call_grp/"),
        await opened("/ws/calls/call_other/"),
    )
    for communicator in (listing, page, other):
        assert (await receive(communicator))["type"] == "snapshot"
    await deliver("call_started", "call_grp")
    await say("call_grp", *(f"line {n}" for n in range(8)))
    for communicator in (listing, page):
        started = await receive(communicator)
        assert started["type"] == "call"
        assert started["call"]["status"] == "ongoing"
    # Throttled: the transcript follows within the interval, as one newest state.
    listed, paged = (await receive(listing))["call"], (await receive(page))["call"]
    assert (listed["turn_count"], len(listed["turns"]), listed["first_turn"]) == (8, 6, 2)
    assert len(paged["turns"]) == 8
    assert await other.receive_nothing(0.3)


async def test_a_rolled_back_write_reaches_nobody(opened):
    listing = await opened()
    await receive(listing)

    def record_then_fail() -> None:
        with transaction.atomic():
            body = webhook_body("call_started", "call_rolled_back")
            call_event_record(
                event=parse_webhook(body), raw_body=body, source_ip=None, key_fingerprint="t"
            )
            raise RuntimeError("a later step failed")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(record_then_fail)()
    assert await listing.receive_nothing(0.5)


async def test_a_busy_call_reaches_browsers_at_most_once_per_interval(opened, settings):
    settings.LIVE_BROADCAST_INTERVAL_MS = 400
    page = await opened("/ws/calls/call_busy/")
    await receive(page)
    for count in range(1, 11):
        await say("call_busy", *(f"line {n}" for n in range(count)))
    first = await receive(page)
    last = await receive(page)
    assert first["call"]["turn_count"] < 10, "the first write goes out at once"
    assert last["call"]["turn_count"] == 10, "then the newest, once the interval is over"
    assert await page.receive_nothing(0.6)


async def test_after_a_reconnect_the_snapshot_has_every_turn_once(opened):
    page = await opened("/ws/calls/call_resync/")
    await receive(page)
    await say("call_resync", "one", "two", "three")
    await receive(page)
    await page.disconnect()
    await say("call_resync", "one", "two", "three", "four", "five")  # while disconnected
    snapshot = await receive(await opened("/ws/calls/call_resync/"))
    (call,) = snapshot["calls"]
    assert [turn["content"] for turn in call["turns"]] == ["one", "two", "three", "four", "five"]


async def test_a_closed_socket_leaves_its_group(opened):
    layer = get_channel_layer()
    if not isinstance(layer, InMemoryChannelLayer):
        pytest.skip("only the in-memory layer lists a group's members")
    page = await opened("/ws/calls/call_left/")
    await receive(page)
    assert len(layer.groups["call.call_left"]) == 1
    await page.disconnect()
    assert not layer.groups.get("call.call_left")
