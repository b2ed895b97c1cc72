"""Faults survived, against real daphne servers: the database or Redis gone, a hard kill.

The shared PostgreSQL and Redis are never stopped: a server under test reaches them through
a TCP proxy on loopback (tests/fakes/tcp_proxy.py) that the test cuts and restores.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connections
from websockets.sync.client import connect

from calls.models import Call, CallEvent
from tests import retell
from tests.conftest import StartServer
from tests.fakes.tcp_proxy import TcpProxy, tcp_proxy
from tests.http import Reply, post_webhook, request
from tests.servers import RunningServer, database_url, free_port

pytestmark = pytest.mark.django_db(transaction=True)

RECOVERY_ATTEMPTS = 40  # Retell retries a few times; the test is more patient, never timed
RECOVERY_PAUSE_SECONDS = 0.25


def is_postgres() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


needs_postgres_and_redis = pytest.mark.skipif(
    not (is_postgres() and os.environ.get("REDIS_URL")),
    reason="needs PostgreSQL and Redis: DATABASE_URL=postgres://... REDIS_URL=redis://... "
    "(the CI's second pass)",
)


def deliver(server: RunningServer, event: str, call_id: str) -> Reply:
    body = retell.compact(retell.with_call_id(retell.fixture_json(event), call_id))
    return post_webhook(server.url, body, retell.signature(body))


def through_proxy(url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    auth = f"{netloc[0]}@" if len(netloc) == 2 else ""
    # Fail fast while the database is away instead of waiting out the OS's connect timeout.
    return urlunsplit(
        parts._replace(netloc=f"{auth}127.0.0.1:{proxy.port}", query="connect_timeout=2")
    )


# --- PostgreSQL unreachable ---------------------------------------------------------------


@pytest.fixture(scope="module")
def database_proxy(django_db_setup: None, django_db_blocker: Any) -> Iterator[TcpProxy]:
    if not is_postgres():
        pytest.skip("needs PostgreSQL (the CI's second pass)")
    with django_db_blocker.unblock():
        database = connections["default"].settings_dict
    with tcp_proxy(database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def server_behind_proxy(
    database_proxy: TcpProxy,
    asgi_server_factory: StartServer,
    django_db_blocker: Any,
) -> RunningServer:
    with django_db_blocker.unblock():
        url = database_url(connections["default"].settings_dict)
    return asgi_server_factory(
        {
            "DATABASE_URL": through_proxy(url, database_proxy),
            "DATABASE_POOL_TIMEOUT_SECONDS": "2",
        }
    )


def retry_until_stored(server: RunningServer, event: str, call_id: str) -> list[int]:
    statuses = []
    for _ in range(RECOVERY_ATTEMPTS):
        statuses.append(deliver(server, event, call_id).status)
        if statuses[-1] == 200:
            break
        time.sleep(RECOVERY_PAUSE_SECONDS)
    return statuses


@needs_postgres_and_redis
def test_without_the_database_webhooks_get_5xx_and_retries_are_stored_later(
    database_proxy, server_behind_proxy
):
    assert deliver(server_behind_proxy, "call_started", "call_db_fault").status == 200
    database_proxy.cut()
    try:
        during = [
            deliver(server_behind_proxy, "call_ended", "call_db_fault").status for _ in range(3)
        ]
        health = request(f"{server_behind_proxy.url}/health")
    finally:
        database_proxy.restore()
    assert all(500 <= status < 600 for status in during), during
    assert health.status == 503
    assert health.json()["checks"]["database"] == "down"

    statuses = retry_until_stored(server_behind_proxy, "call_ended", "call_db_fault")
    assert statuses[-1] == 200, statuses
    assert all(status == 200 or status >= 500 for status in statuses), statuses
    call = Call.objects.get(call_id="call_db_fault")
    assert call.status == "ended"
    assert list(call.events.values_list("event", flat=True)) == ["call_started", "call_ended"]
    assert request(f"{server_behind_proxy.url}/health").status == 200


# --- Redis unreachable --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_without_redis(asgi_server_factory: StartServer) -> RunningServer:
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs REDIS_URL (the CI's second pass)")
    # A port nobody listens on: Redis configured, and down.
    return asgi_server_factory({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})


@needs_postgres_and_redis
def test_without_redis_webhooks_are_still_stored(server_without_redis):
    for event in ("call_started", "call_ended"):
        assert deliver(server_without_redis, event, "call_no_redis").status == 200
    assert Call.objects.get(call_id="call_no_redis").status == "ended"
    health = request(f"{server_without_redis.url}/health")
    assert health.status == 503
    assert health.json()["checks"] == {"database": "ok", "channel_layer": "down"}


@needs_postgres_and_redis
def test_without_redis_the_call_socket_keeps_answering(server_without_redis):
    url = f"{server_without_redis.ws_url}/llm-websocket/call_socket_no_redis"
    with connect(url, open_timeout=10, proxy=None) as socket:
        assert json.loads(socket.recv(timeout=10))["response_type"] == "config"
        assert json.loads(socket.recv(timeout=10))["response_id"] == 0
        socket.send(
            json.dumps(
                {
                    "interaction_type": "response_required",
                    "response_id": 1,
                    "transcript": [{"role": "user", "content": "What are your hours?"}],
                }
            )
        )
        frames: list[dict[str, Any]] = []
        while not frames or not frames[-1].get("content_complete"):
            frame = json.loads(socket.recv(timeout=10))
            if frame.get("response_type") == "response":
                frames.append(frame)
    assert all(frame["response_id"] == 1 for frame in frames)
    assert "".join(frame["content"] for frame in frames)
    # The server records the session after the socket closes; wait for that write, or the
    # next test's table flush can deadlock against it on PostgreSQL.
    wait_for_session_record("call_socket_no_redis")


def wait_for_session_record(call_id: str) -> None:
    sessions = CallEvent.objects.filter(call__call_id=call_id, event="llm_session")
    for _ in range(500):
        if sessions.exists():
            return
        time.sleep(0.02)
    raise AssertionError(f"the server never recorded the session of {call_id}")


# --- Killed hard mid-load -----------------------------------------------------------------

LOAD_CALLS = 400
LOAD_THREADS = 8
KILL_AFTER_ACCEPTED = 60


def kill_mid_load(server: RunningServer) -> dict[str, int]:
    """Post call_ended deliveries until the server is SIGKILLed; call id -> status."""
    answered: dict[str, int] = {}
    lock = threading.Lock()
    killed = threading.Event()

    def send(number: int) -> None:
        call_id = f"call_kill_{number:04d}"
        try:
            status = deliver(server, "call_ended", call_id).status
        except OSError:
            return  # no answer: the delivery may or may not have been stored
        with lock:
            answered[call_id] = status
            stored = sum(1 for value in answered.values() if value == 200)
        if stored >= KILL_AFTER_ACCEPTED and not killed.is_set():
            killed.set()
            os.kill(server.process.pid, signal.SIGKILL)

    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        list(pool.map(send, range(LOAD_CALLS)))
    server.process.wait()
    assert killed.is_set(), "the load finished before the server was killed"
    return answered


def assert_complete(event: CallEvent) -> None:
    """A stored delivery is whole: its bytes, its hash, its payload and its merged call."""
    assert hashlib.sha256(event.raw_body.encode()).hexdigest() == event.body_sha256
    assert json.loads(event.raw_body)["call"] == event.payload
    assert event.call.status == "ended"
    assert event.call.last_event == "call_ended"


def test_a_hard_kill_mid_load_loses_no_acknowledged_delivery(asgi_server_factory):
    server = asgi_server_factory({})
    answered = kill_mid_load(server)
    acknowledged = {call_id for call_id, status in answered.items() if status == 200}
    stored = {
        event.call.call_id: event
        for event in CallEvent.objects.filter(
            call__call_id__startswith="call_kill_"
        ).select_related("call")
    }
    assert acknowledged <= set(stored)
    for event in stored.values():
        assert_complete(event)
    # No call row outlived a rolled-back transaction without its event.
    assert not Call.objects.filter(call_id__startswith="call_kill_", events__isnull=True).exists()
