"""What only the ASGI endpoint of POST /webhook does (calls/webhook_asgi.py).

The webhook's contract itself runs against both transports in test_webhook_view.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

from calls import webhook_asgi
from calls.models import Call, CallEvent
from retellhub.asgi import application
from tests import retell
from tests.asgi import AsgiClient, http_scope

pytestmark = pytest.mark.django_db


def signed(body: bytes) -> dict[str, str]:
    return {"X-Retell-Signature": retell.signature(body)}


def test_a_disallowed_host_gets_400_and_nothing_is_stored():
    body = retell.fixture_bytes("call_ended")
    response = AsgiClient().post("/webhook", body, headers={**signed(body), "Host": "evil.test"})
    assert (response.status_code, response.json()) == (400, {"message": "Invalid Host header."})
    assert CallEvent.objects.count() == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_answers_carry_the_same_headers_as_the_drf_view(client, method):
    body = b"{}" if method == "POST" else b""
    fast = AsgiClient().request(method, "/webhook", body, content_type="application/json")
    django = client.generic(method, "/webhook", body, content_type="application/json")
    assert fast.status_code == django.status_code
    assert fast.content == django.content
    assert fast.headers == {name.lower(): value for name, value in django.headers.items()}


def _stream(chunks: list[bytes], *, then_disconnect: bool = False) -> list[dict[str, Any]]:
    """Send a body in chunks (no Content-Length) and collect what the endpoint answers."""

    async def run() -> list[dict[str, Any]]:
        headers = [(b"host", b"127.0.0.1"), (b"x-retell-signature", b"v=1,d=" + b"0" * 64)]
        communicator = ApplicationCommunicator(
            application, http_scope("POST", "/webhook", headers, ("127.0.0.1", 1))
        )
        for chunk in chunks:
            await communicator.send_input(
                {"type": "http.request", "body": chunk, "more_body": True}
            )
        if then_disconnect:
            await communicator.send_input({"type": "http.disconnect"})
        else:
            await communicator.send_input({"type": "http.request", "body": b""})
        await communicator.wait(timeout=5)
        messages = []
        while not communicator.output_queue.empty():
            messages.append(await communicator.receive_output())
        return messages

    return async_to_sync(run)()


def test_a_streamed_body_is_refused_as_soon_as_it_passes_the_limit(settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    messages = _stream([b"x" * 600, b"x" * 600, b"x" * 600])
    assert messages[0]["status"] == 413
    assert messages[1]["body"] == b'{"message":"Body exceeds 1000 bytes."}'


def test_a_client_gone_before_its_body_ends_gets_nothing_and_stores_nothing():
    assert _stream([b'{"event":'], then_disconnect=True) == []
    assert CallEvent.objects.count() == 0


# Django's ASGI handler runs the view on a request thread of its own, with its own
# connection: the rows must be committed for the test to see them.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("setting", "value"), [("WEBHOOK_FAST_PATH", False), ("SECURE_SSL_REDIRECT", True)]
)
def test_django_answers_when_the_fast_path_is_off(settings, monkeypatch, setting, value):
    setattr(settings, setting, value)

    def unexpected(*args: Any) -> None:
        raise AssertionError("the fast path answered")

    monkeypatch.setattr(webhook_asgi, "_answer", unexpected)
    body = retell.fixture_bytes("call_started")
    response = AsgiClient().post(
        "/webhook", body, content_type="application/json", headers=signed(body)
    )
    # The DRF view answered (its middleware read SECURE_SSL_REDIRECT at start-up).
    assert (response.status_code, response.json()) == (200, {"received": True})
    assert Call.objects.count() == 1


def test_other_paths_go_to_django():
    assert AsgiClient().get("/ping").json() == {"status": "ok"}
    assert AsgiClient().get("/webhook/").status_code == 404
