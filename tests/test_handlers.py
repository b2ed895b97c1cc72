"""retellhub/handlers.py: Django's ASGI handler with its request threads reused."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.http import HttpRequest, HttpResponse
from django.urls import path

from retellhub.handlers import PooledASGIHandler, RequestThreads
from tests.asgi import http_scope

_gate = threading.Barrier(1)


def thread_name(request: HttpRequest) -> HttpResponse:
    _gate.wait(timeout=5)
    current = threading.current_thread()
    return HttpResponse(f"{current.name} {current.ident}")


urlpatterns = [path("thread", thread_name)]


async def _get(handler: PooledASGIHandler) -> str:
    communicator = ApplicationCommunicator(
        handler, http_scope("GET", "/thread", [(b"host", b"testserver")], ("127.0.0.1", 5000))
    )
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=5)
    assert start["status"] == 200
    body = await communicator.receive_output(timeout=5)
    await communicator.wait(timeout=5)
    return str(body["body"].decode())


@pytest.fixture
def handler(settings: Any) -> PooledASGIHandler:
    settings.ROOT_URLCONF = __name__
    settings.ALLOWED_HOSTS = ["testserver"]
    fresh = PooledASGIHandler()
    fresh.threads = RequestThreads(keep=4)
    return fresh


def test_sequential_requests_reuse_one_thread(handler: PooledASGIHandler) -> None:
    async def scenario() -> list[str]:
        return [await _get(handler) for _ in range(20)]

    names = asyncio.run(scenario())
    assert len(set(names)) == 1
    assert names[0].startswith("retellhub-request")  # not a fresh one per request
    assert handler.threads.idle == 1


def test_concurrent_requests_get_their_own_threads_and_the_pool_is_capped(
    handler: PooledASGIHandler,
) -> None:
    global _gate
    _gate = threading.Barrier(6)  # all six views must be running at once to pass it
    try:

        async def scenario() -> list[str]:
            return list(await asyncio.gather(*(_get(handler) for _ in range(6))))

        names = asyncio.run(scenario())
    finally:
        _gate = threading.Barrier(1)
    assert len(set(names)) == 6
    assert handler.threads.idle == 4  # two beyond the cap were shut down


def test_request_threads_pool() -> None:
    threads = RequestThreads(keep=1)
    first, second = threads.take(), threads.take()
    assert first is not second
    threads.give_back(first)
    threads.give_back(second)
    assert threads.idle == 1
    assert threads.take() is first
    with pytest.raises(RuntimeError):
        second.submit(int)  # shut down, not kept


def test_start_up_objects_are_kept_out_of_the_collectors_reach() -> None:
    import gc

    import retellhub.asgi  # noqa: F401 - imported by the server at start-up
    from retellhub.heap import GC_YOUNG_THRESHOLD

    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD
