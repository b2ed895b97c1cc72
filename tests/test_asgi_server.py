"""The real ASGI application under daphne, over a real loopback socket."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from calls.models import Call, CallEvent
from tests import retell
from tests.http import post_webhook, request
from tests.servers import SERVER_KINDS

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_answers_ping_and_health(asgi_server):
    assert request(f"{asgi_server.url}/ping").json() == {"status": "ok"}
    health = request(f"{asgi_server.url}/health")
    assert (health.status, health.json()) == (
        200,
        {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}},
    )


def test_it_stores_a_lifecycle_posted_over_the_wire(asgi_server):
    for name in ("call_started", "call_ended", "call_analyzed"):
        body = retell.fixture_bytes(name)
        reply = post_webhook(asgi_server.url, body, retell.signature(body))
        assert (reply.status, reply.json()) == (200, {"received": True})
    call = Call.objects.get()
    assert call.status == "ended"
    assert call.call_successful is True
    assert [e.event for e in call.events.all()] == ["call_started", "call_ended", "call_analyzed"]


def test_it_refuses_a_bad_signature_over_the_wire(asgi_server):
    body = retell.fixture_bytes("call_ended")
    reply = post_webhook(asgi_server.url, body, retell.signature(body, key="key_wrong"))
    assert (reply.status, reply.json()) == (401, {"message": "Unauthorized"})
    assert CallEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "Body is not valid UTF-8 JSON."),
        (b'{"call": {"call_id": "call_x"}}', "Missing 'event': a non-empty string is required."),
        (
            b'{"event": "call_ended", "call": {"agent_id": "a"}}',
            "Missing 'call_id': the call object needs a non-empty string id.",
        ),
    ],
)
def test_it_answers_400_for_a_signed_but_unusable_body_over_the_wire(asgi_server, body, message):
    # The body is parsed in the writer process, not by the server: its 400 must not change.
    reply = post_webhook(asgi_server.url, body, retell.signature(body))
    assert (reply.status, reply.json()) == (400, {"message": message})
    assert CallEvent.objects.count() == 0
    good = retell.fixture_bytes("call_ended")  # and the writer goes on writing
    assert post_webhook(asgi_server.url, good, retell.signature(good)).status == 200
    assert "webhook unusable" in asgi_server.log()


def test_it_answers_413_for_an_oversized_body_over_the_wire(asgi_server):
    body = b"{" + b" " * (5 * 1024 * 1024) + b"}"
    reply = post_webhook(asgi_server.url, body, retell.signature(body))
    assert reply.status == 413
    assert reply.json() == {"message": f"Body exceeds {5 * 1024 * 1024} bytes."}


def test_concurrent_identical_deliveries_make_one_row(asgi_server):
    """Retell retries while the first attempt is in flight: one row, every answer 200."""
    body = retell.fixture_bytes("call_analyzed")
    attempts = 24

    def deliver(_: int) -> int:
        return post_webhook(asgi_server.url, body, retell.signature(body)).status

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        statuses = list(pool.map(deliver, range(attempts)))
    assert statuses == [200] * attempts
    event = CallEvent.objects.get()
    assert event.delivery_count == attempts
    assert Call.objects.count() == 1


def test_concurrent_distinct_deliveries_never_fail(asgi_server):
    """Many calls at once: no 'database is locked', no lost delivery, on every backend."""
    bodies = [
        retell.compact(retell.with_call_id(retell.fixture_json(name), f"call_conc_{n}"))
        for n in range(20)
        for name in ("call_started", "call_ended", "call_analyzed")
    ]

    def deliver(body: bytes) -> int:
        return post_webhook(asgi_server.url, body, retell.signature(body)).status

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(deliver, bodies))
    assert statuses == [200] * len(bodies)
    assert CallEvent.objects.count() == len(bodies)
    assert Call.objects.filter(status="ended", user_sentiment="Positive").count() == 20


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_the_server_does_not_rewrite_the_client_address_from_forwarded_for(
    asgi_server_factory, kind
):
    """Only TRUSTED_PROXY_COUNT decides whom X-Forwarded-For is believed from (here: nobody),
    whatever the server: a loopback caller cannot pose as Retell's address."""
    server = asgi_server_factory({"WEBHOOK_ALLOWED_IPS": "100.20.5.228"}, kind=kind)
    body = retell.fixture_bytes("call_started")
    reply = request(
        f"{server.url}/webhook",
        "POST",
        body,
        {
            "Content-Type": "application/json",
            "X-Retell-Signature": retell.signature(body),
            "X-Forwarded-For": "100.20.5.228",
        },
    )
    assert (reply.status, reply.json()) == (403, {"message": "Forbidden"})
    assert CallEvent.objects.count() == 0
