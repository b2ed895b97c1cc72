from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from channels.testing import WebsocketCommunicator
from django.db import DatabaseError
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from bench.fake_model import FakeModel, Gate, Text
from calls.models import CallEvent
from notifications.models import Delivery, DeliveryKind, DeliveryState
from retellhub import metrics
from retellhub.asgi import application
from tests import llm_socket, retell
from tests.asgi import AsgiClient
from tests.factories import CallEventFactory

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-0123456789abcdef"
FIRST_FRAMES = "retellhub_llm_first_frame_seconds_count"
SOCKET_WAIT = 10  # seconds a frame may take on a loaded machine; never asserted


@pytest.fixture(params=["drf_view", "asgi_endpoint"])
def webhook_client(request: pytest.FixtureRequest, client: Any) -> Any:
    """The webhook's metrics are the same on both its transports."""
    return client if request.param == "drf_view" else AsgiClient()


def delivery_count(event: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "retellhub_webhook_deliveries_total", {"event": event, "outcome": outcome}
    )
    return value or 0.0


def scrape(client, **extra) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


# --- Who may read /metrics ---------------------------------------------------------------


def test_it_answers_loopback_callers_when_no_token_is_set(client):
    samples = scrape(client, REMOTE_ADDR="127.0.0.1")
    assert ("retellhub_llm_sockets_open", ()) in samples


def test_it_refuses_remote_callers_when_no_token_is_set(client):
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 403


def test_it_refuses_a_loopback_proxy_relaying_an_outside_caller(client):
    # A reverse proxy on the same host connects from 127.0.0.1 on an outsider's behalf.
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403


def test_it_judges_the_forwarded_address_behind_declared_proxies(client, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    outside = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    inside = client.get("/metrics", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert (outside.status_code, inside.status_code) == (403, 200)


def test_it_requires_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_refuses_a_wrong_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert response.status_code == 401


def test_it_refuses_the_token_under_another_scheme(client, settings):
    settings.METRICS_TOKEN = TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})
    assert response.status_code == 401


def test_it_answers_anyone_with_the_right_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    samples = scrape(client, REMOTE_ADDR="10.1.2.3", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ("retellhub_outbox_up", ()) in samples


def test_it_refuses_post(client):
    assert client.post("/metrics").status_code == 405


# --- Webhook outcomes --------------------------------------------------------------------


def test_it_counts_stored_and_duplicate_deliveries(signed_post):
    body = retell.fixture_bytes("call_started")
    stored, duplicate = (
        delivery_count("call_started", "stored"),
        delivery_count("call_started", "duplicate"),
    )
    signed_post(body)
    signed_post(body)
    assert delivery_count("call_started", "stored") == stored + 1
    assert delivery_count("call_started", "duplicate") == duplicate + 1


@pytest.mark.parametrize(
    ("reason", "post_kwargs"),
    [
        ("missing_header", {"header": ""}),
        ("malformed_header", {"header": "v=1,d=nothex"}),
        ("stale_timestamp", {"timestamp_ms": 1_000}),
        ("future_timestamp", {"timestamp_ms": 99_999_999_999_999}),
        ("bad_digest", {"key": "key_not_configured_123"}),
    ],
)
def test_it_counts_each_signature_refusal_by_reason(signed_post, reason, post_kwargs):
    before = delivery_count("unknown", reason)
    response = signed_post(retell.fixture_bytes("call_ended"), **post_kwargs)
    assert response.status_code == 401
    assert delivery_count("unknown", reason) == before + 1


def test_it_counts_a_delivery_when_no_key_is_configured(signed_post, settings):
    settings.RETELL_API_KEYS = []
    before = delivery_count("unknown", "no_key_configured")
    signed_post(retell.fixture_bytes("call_ended"))
    assert delivery_count("unknown", "no_key_configured") == before + 1


def test_it_counts_forbidden_addresses(signed_post, settings):
    settings.WEBHOOK_ALLOWED_IPS = ["100.20.5.228"]
    before = delivery_count("unknown", "forbidden")
    assert signed_post(retell.fixture_bytes("call_ended")).status_code == 403
    assert delivery_count("unknown", "forbidden") == before + 1


def test_it_counts_oversized_bodies(signed_post, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 10
    before = delivery_count("unknown", "too_large")
    assert signed_post(retell.fixture_bytes("call_ended")).status_code == 413
    assert delivery_count("unknown", "too_large") == before + 1


def test_it_counts_unusable_payloads(signed_post):
    before = delivery_count("unknown", "bad_payload")
    assert signed_post(b'{"event": "call_ended"}').status_code == 400
    assert delivery_count("unknown", "bad_payload") == before + 1


def test_it_counts_storage_errors(signed_post, monkeypatch):
    def broken(**kwargs):
        raise DatabaseError("database is down")

    monkeypatch.setattr("calls.services.call_merge", broken)
    before = delivery_count("call_ended", "error")
    assert signed_post(retell.fixture_bytes("call_ended")).status_code == 500
    assert delivery_count("call_ended", "error") == before + 1


def test_it_groups_unknown_event_names(signed_post):
    document = retell.fixture_json("call_started")
    document["event"] = "some_future_event"
    before = delivery_count("other", "stored")
    signed_post(retell.compact(document))
    assert delivery_count("other", "stored") == before + 1


# --- Latency, sockets, outbox ------------------------------------------------------------


def test_it_times_requests_by_view_name(client):
    labels = {"view": "ping", "method": "GET", "status": "200"}
    name = "retellhub_http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    client.get("/ping")
    assert REGISTRY.get_sample_value(name, labels) == before + 1


def test_a_series_kept_between_calls_goes_on_counting_in_the_registry(client):
    labels = {"view": "ping", "method": "GET", "status": "200"}
    name = "retellhub_http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    for _ in range(3):
        client.get("/ping")
    assert REGISTRY.get_sample_value(name, labels) == before + 3


def test_it_times_webhooks_under_the_same_name_on_both_transports(webhook_client):
    labels = {"view": "webhook", "method": "GET", "status": "405"}
    name = "retellhub_http_request_duration_seconds_count"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    webhook_client.get("/webhook")
    assert REGISTRY.get_sample_value(name, labels) == before + 1


def test_it_tracks_sockets_first_frames_and_cancellations():
    sockets = REGISTRY.get_sample_value("retellhub_llm_sockets_open") or 0.0
    frames = REGISTRY.get_sample_value("retellhub_llm_first_frame_seconds_count") or 0.0
    cancelled = REGISTRY.get_sample_value("retellhub_llm_answers_cancelled_total") or 0.0
    metrics.llm_socket_opened()
    metrics.llm_first_frame(milliseconds=250)
    metrics.llm_answer_cancelled()
    assert REGISTRY.get_sample_value("retellhub_llm_sockets_open") == sockets + 1
    metrics.llm_socket_closed()
    assert REGISTRY.get_sample_value("retellhub_llm_sockets_open") == sockets
    assert REGISTRY.get_sample_value("retellhub_llm_first_frame_seconds_count") == frames + 1
    assert REGISTRY.get_sample_value("retellhub_llm_answers_cancelled_total") == cancelled + 1


def make_delivery(*, state: str) -> Delivery:
    event = cast(CallEvent, CallEventFactory())
    now = timezone.now()
    return Delivery.objects.create(
        kind=DeliveryKind.FORWARD,
        call=event.call,
        event=event,
        message_id=f"msg_{event.pk}_{state}",
        state=state,
        max_attempts=3,
        next_attempt_at=now + timedelta(minutes=1),
    )


def test_it_counts_outbox_deliveries_by_state_at_scrape_time(client):
    make_delivery(state=DeliveryState.PENDING)
    make_delivery(state=DeliveryState.DEAD)
    make_delivery(state=DeliveryState.DEAD)
    samples = scrape(client)
    forward = "retellhub_outbox_deliveries"
    assert samples[(forward, (("kind", "forward"), ("state", "pending")))] == 1
    assert samples[(forward, (("kind", "forward"), ("state", "dead")))] == 2
    assert samples[(forward, (("kind", "slack"), ("state", "dead")))] == 0
    assert samples[("retellhub_outbox_up", ())] == 1


def test_it_counts_outbox_tasks_by_status(client):
    samples = scrape(client)
    assert samples[("retellhub_outbox_tasks", (("status", "READY"),))] == 0
    assert samples[("retellhub_outbox_tasks", (("status", "FAILED"),))] == 0


def test_it_reports_the_outbox_down_when_the_database_fails(client, monkeypatch):
    def broken():
        raise DatabaseError("no database")

    monkeypatch.setattr(metrics, "_delivery_counts", broken)
    samples = scrape(client)
    assert samples[("retellhub_outbox_up", ())] == 0
    assert not any(name == "retellhub_outbox_deliveries" for name, _ in samples)


# --- The call socket, through the real ASGI application ---------------------------------


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def receive_json(communicator: WebsocketCommunicator) -> dict[str, Any]:
    return json.loads(await communicator.receive_from(timeout=SOCKET_WAIT))


@pytest.fixture
def model(settings) -> Iterator[FakeModel]:
    fake = FakeModel(tokens=3).start()
    settings.AGENT_RESPONDER = "openai"
    settings.OPENAI_BASE_URL = fake.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MODEL = "fake-model"
    yield fake
    fake.stop()


@pytest.mark.django_db(transaction=True)
async def test_the_call_socket_reports_sockets_first_frames_and_cancellations(model):
    model.script("first question", Text("Well, "), Gate("never-opened"))
    opened, frames = sample("retellhub_llm_sockets_open"), sample(FIRST_FRAMES)
    cancelled = sample("retellhub_llm_answers_cancelled_total")
    communicator = WebsocketCommunicator(application, "/llm-websocket/call_metrics_1")
    assert (await communicator.connect(timeout=SOCKET_WAIT))[0]
    try:
        assert sample("retellhub_llm_sockets_open") == opened + 1
        await receive_json(communicator)  # config
        await receive_json(communicator)  # begin message
        await communicator.send_json_to(llm_socket.request(1, "first question"))
        assert (await receive_json(communicator))["content"] == "Well, "
        # The first answer is held open by the model; a newer request cancels it.
        await communicator.send_json_to(llm_socket.request(2, "second question"))
        while not llm_socket.is_complete(await receive_json(communicator), 2):
            pass
    finally:
        await communicator.disconnect()
    assert sample("retellhub_llm_sockets_open") == opened
    assert sample(FIRST_FRAMES) == frames + 2
    assert sample("retellhub_llm_answers_cancelled_total") == cancelled + 1
