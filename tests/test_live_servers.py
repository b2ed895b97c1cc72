"""The live monitor across real server processes: two daphne servers sharing Redis, and a
server whose Redis is unreachable."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests import retell
from tests.conftest import StartServer
from tests.http import post_webhook
from tests.live import conversation, session_cookie, wait_for_session, webhook_body
from tests.servers import RunningServer, free_port

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 15  # seconds; a bound for a stuck test, never an asserted timing
needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs Redis shared by two servers: REDIS_URL=redis://... (the CI's second pass)",
)
SECRET_KEY = "live-servers-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
FAST = {
    "LLM_TRANSCRIPT_SAVE_INTERVAL_MS": "50",
    "LIVE_BROADCAST_INTERVAL_MS": "50",
    # Known here, so the test can sign a session these servers accept.
    "SECRET_KEY": SECRET_KEY,
}


def deliver(server: RunningServer, event: str, call_id: str, **call: Any) -> int:
    body = webhook_body(event, call_id, **call)
    return post_webhook(server.url, body, retell.signature(body)).status


def play_socket(server: RunningServer, call_id: str, *lines: str) -> None:
    """Retell's side of the call socket: config, greeting, then the caller's lines."""
    with connect(f"{server.ws_url}/llm-websocket/{call_id}", proxy=None) as socket:
        socket.recv(timeout=WAIT)  # config
        socket.recv(timeout=WAIT)  # begin message
        for count in range(1, len(lines) + 1):
            update = {"interaction_type": "update_only", "transcript": conversation(*lines[:count])}
            socket.send(json.dumps(update))
        socket.send(json.dumps({"interaction_type": "ping_pong", "timestamp": 1}))
        assert json.loads(socket.recv(timeout=WAIT))["response_type"] == "ping_pong"
    wait_for_session(call_id)


@pytest.fixture
def monitor_of() -> Iterator[Any]:
    """Open ``/ws/calls/`` on a server as a signed-in staff member's browser would."""
    cookie = session_cookie(secret_key=SECRET_KEY)
    with ExitStack() as sockets:

        def open_on(server: RunningServer) -> ClientConnection:
            socket = sockets.enter_context(
                connect(
                    f"{server.ws_url}/ws/calls/",
                    proxy=None,
                    origin=Origin(server.url),
                    additional_headers={"Cookie": cookie},
                    open_timeout=WAIT,
                )
            )
            assert json.loads(socket.recv(timeout=WAIT))["type"] == "snapshot"
            return socket

        yield open_on


def wait_for(socket: ClientConnection, call_id: str, done: Any) -> dict[str, Any]:
    """The first state of ``call_id`` for which ``done`` holds (earlier ones are skipped)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        message = json.loads(socket.recv(timeout=WAIT))
        if message["type"] == "call" and message["call"]["call_id"] == call_id:
            if done(message["call"]):
                return message["call"]
    raise AssertionError(f"{call_id} never reached the expected state")


@pytest.fixture(scope="module")
def two_servers(asgi_server_factory: StartServer) -> tuple[RunningServer, RunningServer]:
    return asgi_server_factory(FAST), asgi_server_factory(FAST)


@needs_redis
def test_a_monitor_on_one_server_sees_a_call_handled_by_the_other(two_servers, monitor_of):
    watched, working = two_servers
    monitor = monitor_of(watched)
    lines = ("Hello! Thanks for calling.", "Hi, I'd like to book a cleaning.")
    assert deliver(working, "call_started", "call_other_server") == 200
    assert wait_for(monitor, "call_other_server", lambda c: c["status"] == "ongoing")
    play_socket(working, "call_other_server", *lines)
    talking = wait_for(monitor, "call_other_server", lambda c: c["turn_count"] == 2)
    assert [turn["content"] for turn in talking["turns"]] == list(lines)
    assert deliver(working, "call_ended", "call_other_server") == 200
    assert wait_for(monitor, "call_other_server", lambda c: c["finished"])["status"] == "ended"


def test_with_redis_unreachable_webhooks_and_the_call_socket_carry_on(asgi_server_factory):
    # Nothing listens on this port: every send to the layer fails at once.
    server = asgi_server_factory({**FAST, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    started = time.monotonic()
    assert deliver(server, "call_started", "call_no_redis") == 200
    assert time.monotonic() - started < 5, "the webhook must not wait for the layer"
    play_socket(server, "call_no_redis", "Hello!", "Hi, are you open today?")
    assert deliver(server, "call_ended", "call_no_redis") == 200
    deadline = time.monotonic() + WAIT
    while "live monitor update for call call_no_redis not sent" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


@pytest.mark.parametrize("layer", ["in-memory", "redis"])
def test_a_monitor_sees_what_the_webhook_writer_process_stored(
    asgi_server_factory, monitor_of, layer
):
    """The child process that writes webhooks (calls/writer_process.py) cannot reach this
    server's in-memory layer, so the server tells its pages itself; through Redis the child
    sends the updates."""
    if layer == "redis" and not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis: REDIS_URL=redis://... (the CI's second pass)")
    redis = os.environ["REDIS_URL"] if layer == "redis" else ""
    server = asgi_server_factory({**FAST, "REDIS_URL": redis, "WEBHOOK_WRITER": "process"})
    monitor = monitor_of(server)
    call_id = f"call_written_by_child_{layer}"
    assert deliver(server, "call_started", call_id) == 200
    assert wait_for(monitor, call_id, lambda c: c["status"] == "ongoing")
    assert deliver(server, "call_ended", call_id) == 200
    assert wait_for(monitor, call_id, lambda c: c["finished"])["status"] == "ended"
