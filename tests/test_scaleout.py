"""Two daphne servers sharing PostgreSQL and Redis, as behind a load balancer."""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.sync.client import connect

from calls.models import Call, CallEvent
from tests import retell
from tests.conftest import StartServer
from tests.http import post_webhook
from tests.servers import RunningServer
from tests.test_faults import needs_postgres_and_redis

pytestmark = [pytest.mark.django_db(transaction=True), needs_postgres_and_redis]

EVENTS = ("call_started", "transcript_updated", "call_ended", "call_analyzed")
CALLS = 12
COPIES = 2  # every delivery arrives twice, as Retell's retries would
SESSION_WAIT_ATTEMPTS = 200
SESSION_WAIT_PAUSE_SECONDS = 0.05


@pytest.fixture(scope="module")
def two_servers(asgi_server_factory: StartServer) -> tuple[RunningServer, RunningServer]:
    # Both take DATABASE_URL (the test database) and REDIS_URL from the test environment.
    settings = {"LLM_TRANSCRIPT_SAVE_INTERVAL_MS": "50"}
    return asgi_server_factory(settings), asgi_server_factory(settings)


def signed(event: str, call_id: str) -> tuple[bytes, str]:
    body = retell.compact(retell.with_call_id(retell.fixture_json(event), call_id))
    return body, retell.signature(body)


def merged_columns(call: Call) -> dict[str, Any]:
    """The call as merged, without what differs by call id or by arrival time."""
    ignored = {
        "id",
        "call_id",
        "created_at",
        "updated_at",
        "last_event_at",
        "field_versions",
        "call_object_event_id",  # an event of this call; its call object is compared instead
    }
    # The transcript as read through its reference (Call.transcript_event), by content.
    values = {name: value for name, value in call.column_values().items() if name not in ignored}
    values["call_object"] = {**(call.call_object or {}), "call_id": None}
    return values


def test_webhooks_spread_over_two_servers_stay_idempotent_and_order_free(two_servers):
    deliveries = [
        (f"call_spread_{number:02d}", event)
        for number in range(CALLS)
        for event in EVENTS
        for _ in range(COPIES)
    ]
    random.Random(8).shuffle(deliveries)  # noqa: S311 - a fixed, reproducible order

    def send(index: int) -> int:
        call_id, event = deliveries[index]
        body, signature = signed(event, call_id)
        return post_webhook(two_servers[index % 2].url, body, signature).status

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(len(deliveries))))

    assert set(statuses) == {200}
    calls = list(
        Call.objects.filter(call_id__startswith="call_spread_").select_related("call_object_event")
    )
    assert len(calls) == CALLS
    for call in calls:
        events = CallEvent.objects.filter(call=call)
        assert sorted(events.values_list("event", flat=True)) == sorted(EVENTS)
        assert sum(events.values_list("delivery_count", flat=True)) == len(EVENTS) * COPIES
    first = merged_columns(calls[0])
    assert first["status"] == "ended"
    assert first["last_event"] == "call_analyzed"
    assert all(merged_columns(call) == first for call in calls[1:])


def wait_for_session(call_id: str) -> CallEvent:
    for _ in range(SESSION_WAIT_ATTEMPTS):
        event = CallEvent.objects.filter(call__call_id=call_id, event="llm_session").first()
        if event is not None:
            return event
        time.sleep(SESSION_WAIT_PAUSE_SECONDS)
    raise AssertionError(f"no socket session recorded for {call_id}")


def talk(socket: Any, said: str, response_id: int) -> None:
    transcript = [
        {"role": "agent", "content": "Hello! How can I help?"},
        {"role": "user", "content": said},
    ]
    socket.send(json.dumps({"interaction_type": "update_only", "transcript": transcript}))
    socket.send(
        json.dumps(
            {
                "interaction_type": "response_required",
                "response_id": response_id,
                "transcript": transcript,
            }
        )
    )
    while not json.loads(socket.recv(timeout=10)).get("content_complete"):
        pass


def test_a_socket_on_one_server_and_webhooks_on_the_other_update_one_call(two_servers):
    socket_server, webhook_server = two_servers
    call_id = "call_split_0001"
    assert post_webhook(webhook_server.url, *signed("call_started", call_id)).status == 200
    url = f"{socket_server.ws_url}/llm-websocket/{call_id}"
    with connect(url, open_timeout=10, proxy=None) as socket:
        socket.recv(timeout=10)  # config
        socket.recv(timeout=10)  # begin message
        talk(socket, "What are your opening hours?", 1)
    session = wait_for_session(call_id)
    # What the socket heard is on the call the webhooks opened...
    turns = Call.objects.get(call_id=call_id).transcript_object or []
    assert {"role": "user", "content": "What are your opening hours?"} in [
        {"role": turn["role"], "content": turn["content"]} for turn in turns
    ]
    # ...and the webhooks' final data still wins over it.
    assert post_webhook(webhook_server.url, *signed("call_ended", call_id)).status == 200

    call = Call.objects.get(call_id=call_id)
    sources = set(call.events.values_list("source", flat=True))
    assert sources == {"webhook", "llm_socket"}
    assert session.call_id == call.pk
    assert call.status == "ended"
    assert call.last_event == "call_ended"
