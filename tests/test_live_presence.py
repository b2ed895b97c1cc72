"""calls/live_presence.py: writers skip live updates while no live socket is open anywhere."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

from calls import live_presence, realtime
from calls.live_presence import KEY, TTL_SECONDS, Presence
from tests.live import webhook_body
from tests.servers import free_port

needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"),
    reason="needs Redis: REDIS_URL=redis://... (the CI's second pass)",
)


@pytest.fixture
def redis(settings: Any) -> Iterator[Any]:
    settings.REDIS_URL = os.environ["REDIS_URL"]
    client = live_presence._redis(settings.REDIS_URL)
    client.delete(KEY)
    yield client
    client.delete(KEY)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(live_presence.time, "monotonic", lambda: now[0])
    return now


def test_without_redis_only_this_processs_open_sockets_count(settings):
    settings.REDIS_URL = ""
    presence = Presence()
    assert not presence.anyone_watching()
    asyncio.run(presence.socket_opened())  # nothing to record anywhere
    assert presence.anyone_watching()
    presence.socket_closed()
    assert not presence.anyone_watching()  # the page closed: writers build nothing again


@needs_redis
def test_an_open_live_socket_is_seen_by_writers_in_any_process(redis, clock):
    writer, monitor = Presence(), Presence()  # as in two processes
    assert not writer.anyone_watching()
    clock[0] += 1  # past the short memory of a "no"
    asyncio.run(monitor.socket_opened())
    assert 0 < redis.ttl(KEY) <= TTL_SECONDS
    assert writer.anyone_watching()


@needs_redis
def test_a_no_is_remembered_for_a_moment_and_a_yes_for_longer(redis, clock):
    writer = Presence()
    assert not writer.anyone_watching()
    redis.set(KEY, b"1")
    assert not writer.anyone_watching()  # within the same batch of writes
    clock[0] += live_presence.UNWATCHED_CACHE_SECONDS
    assert writer.anyone_watching()
    redis.delete(KEY)
    clock[0] += live_presence.WATCHED_CACHE_SECONDS / 2
    assert writer.anyone_watching()
    clock[0] += live_presence.WATCHED_CACHE_SECONDS
    assert not writer.anyone_watching()


def test_when_redis_cannot_be_asked_writers_send_and_say_so_once(settings, clock, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    writer = Presence()
    with caplog.at_level(logging.WARNING, logger="calls.live_presence"):
        assert writer.anyone_watching()
        assert writer.anyone_watching()
    assert caplog.text.count("live monitor presence unknown") == 1


@needs_redis
@pytest.mark.django_db
def test_with_nobody_watching_a_write_builds_no_update(
    redis, monkeypatch, signed_post, django_capture_on_commit_callbacks
):
    # The layer is Redis (a sending loop would exist), but no live socket is open anywhere.
    monkeypatch.setattr(realtime, "presence", Presence())

    def unexpected(call: object) -> realtime.Broadcast:
        raise AssertionError("built a live update nobody can receive")

    monkeypatch.setattr(realtime, "_broadcast_of", unexpected)
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_post(webhook_body("call_started", "call_unwatched")).status_code == 200
