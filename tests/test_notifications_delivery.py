"""The outbox against a real HTTP receiver on loopback, run by django-tasks-db's worker."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from calls.models import Call
from notifications.actions import delivery_retry
from notifications.attempts import CLAIM_LEASE
from notifications.checks import outbox_settings_check
from notifications.models import (
    Delivery,
    DeliveryKind,
    DeliveryState,
    Destination,
    DestinationKind,
    Recording,
)
from tests import retell
from tests.outbox import (
    FORWARD_SECRET,
    Receiver,
    deliveries_make_due,
    tasks_run_ready,
    verify_standard_webhook,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _outbox_settings(settings: Any, tmp_path: Any) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    settings.FORWARD_URLS = []
    settings.FORWARD_EVENTS = []
    settings.RECORDINGS_CAPTURE = False
    settings.SITE_URL = "https://hub.example.com"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.OUTBOX_MAX_ATTEMPTS = 4
    settings.OUTBOX_BACKOFF_SECONDS = 30
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 100


def event_body(name: str, **changes: Any) -> bytes:
    """A fixture delivery with some call fields changed (``call_analysis`` merged)."""
    document = retell.fixture_json(name)
    call = document["call"]
    analysis = {**call.get("call_analysis", {}), **changes.pop("call_analysis", {})}
    document["call"] = {**call, **changes, **({"call_analysis": analysis} if analysis else {})}
    return retell.compact(document)


def slack_destination(receiver: Receiver, **fields: Any) -> Destination:
    return Destination.objects.create(
        name="Ops channel", kind=DestinationKind.SLACK, url=receiver.url, **fields
    )


def forward_destination(receiver: Receiver, **fields: Any) -> Destination:
    return Destination.objects.create(
        name="CRM",
        kind=DestinationKind.FORWARD,
        url=receiver.url,
        signing_secret=FORWARD_SECRET,
        **fields,
    )


def slack_fields(message: dict[str, Any]) -> dict[str, str]:
    fields = message["blocks"][1]["fields"]
    return dict(field["text"].lstrip("*").split("*\n", 1) for field in fields)


# --- Slack --------------------------------------------------------------------------------


def test_it_posts_a_slack_message_with_summary_duration_sentiment_and_outcome(
    signed_post, httpserver
):
    receiver = Receiver(httpserver, "/slack")
    slack_destination(receiver)
    body = event_body(
        "call_analyzed", call_analysis={"user_sentiment": "Negative", "call_successful": False}
    )
    assert signed_post(body).status_code == 200
    assert tasks_run_ready() == 1

    (request,) = receiver.requests()
    message = json.loads(request.get_data())
    call = Call.objects.get()
    assert message["text"].startswith(
        "Call analyzed, Negative sentiment, Unsuccessful call: call_2f7c1e9a4b3d4e0f8a6b"
    )
    assert call.call_summary in message["text"]
    assert slack_fields(message) == {
        "Duration": "0:14",
        "Sentiment": "Negative",
        "Outcome": "Unsuccessful",
        "Disconnection": "agent_hangup",
        "From": "+•••••••0123",
        "To": "+•••••••9876",
    }
    link = f"<https://hub.example.com/admin/calls/call/{call.pk}/change/|{call.call_id}>"
    assert link in message["blocks"][0]["text"]["text"]
    assert "+14155550123" not in request.get_data(as_text=True)


def test_it_shows_full_numbers_when_the_destination_allows(signed_post, httpserver):
    receiver = Receiver(httpserver, "/slack")
    slack_destination(receiver, show_phone_numbers=True)
    signed_post(retell.fixture_bytes("call_analyzed"))
    tasks_run_ready()
    message = json.loads(receiver.requests()[0].get_data())
    assert slack_fields(message)["From"] == "+14155550123"


def test_it_notifies_slack_only_for_chosen_events(signed_post, httpserver):
    receiver = Receiver(httpserver, "/slack")
    slack_destination(receiver, events="error_disconnection")
    signed_post(retell.fixture_bytes("call_started"))
    signed_post(retell.fixture_bytes("call_ended"))  # agent_hangup: not an error
    assert Delivery.objects.count() == 0
    signed_post(
        retell.compact(
            retell.with_call_id(
                json.loads(
                    event_body("call_ended", disconnection_reason="error_llm_websocket_open")
                ),
                "call_error_1",
            )
        )
    )
    delivery = Delivery.objects.get()
    assert delivery.triggers == "error_disconnection"
    tasks_run_ready()
    message = json.loads(receiver.requests()[0].get_data())
    assert message["text"].startswith("Disconnected by an error: call_error_1")


# --- Forwarding ---------------------------------------------------------------------------


def test_it_forwards_a_normalised_event_signed_per_standard_webhooks(signed_post, httpserver):
    receiver = Receiver(httpserver, "/crm")
    forward_destination(receiver)
    assert signed_post(retell.fixture_bytes("call_ended")).status_code == 200
    tasks_run_ready()

    (request,) = receiver.requests()
    document = verify_standard_webhook(
        secret=FORWARD_SECRET, headers=request.headers, body=request.get_data()
    )
    delivery = Delivery.objects.get()
    assert request.headers["webhook-id"] == delivery.message_id
    assert document["type"] == "call_ended"
    assert document["data"]["call_id"] == "call_2f7c1e9a4b3d4e0f8a6b"
    assert document["data"]["event_id"] == delivery.event_id
    normalised = document["data"]["call"]
    assert normalised["status"] == "ended"
    assert normalised["started_at"] == "2026-01-01T00:00:00Z"
    assert normalised["duration_ms"] == 14870
    assert normalised["from_number"] == "+14155550123"
    attempt = delivery.attempt_log.get()
    assert (attempt.status_code, attempt.succeeded, attempt.error) == (200, True, "")
    assert attempt.latency_ms >= 0


def test_it_forwards_only_chosen_event_types_to_each_endpoint(signed_post, httpserver):
    analyzed_only = Receiver(httpserver, "/analyzed")
    everything = Receiver(httpserver, "/everything")
    forward_destination(analyzed_only, events="call_analyzed")
    forward_destination(everything)
    for name in ("call_started", "call_ended", "call_analyzed"):
        signed_post(retell.fixture_bytes(name))
    assert tasks_run_ready() == 4
    types = {
        path: [json.loads(r.get_data())["type"] for r in receiver.requests()]
        for path, receiver in {"analyzed": analyzed_only, "everything": everything}.items()
    }
    assert types == {
        "analyzed": ["call_analyzed"],
        "everything": ["call_started", "call_ended", "call_analyzed"],
    }


def test_a_redelivered_webhook_enqueues_nothing_more(signed_post, httpserver):
    forward_destination(Receiver(httpserver, "/crm"))
    body = retell.fixture_bytes("call_ended")
    signed_post(body)
    signed_post(body)
    assert Delivery.objects.count() == 1
    assert DBTaskResult.objects.count() == 1


# --- Retries, backoff, dead ----------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_backoff_then_the_delivery_dies(
    signed_post, httpserver, caplog
):
    receiver = Receiver(httpserver, "/crm", status=503)
    forward_destination(receiver)
    signed_post(retell.fixture_bytes("call_ended"))
    delivery = Delivery.objects.get()

    for attempt, wait in enumerate([30, 60, 100], start=1):
        assert tasks_run_ready() == 1
        delivery.refresh_from_db()
        last = delivery.attempt_log.latest("number")
        assert (delivery.state, delivery.attempts) == (DeliveryState.PENDING, attempt)
        assert (last.status_code, last.succeeded) == (503, False)
        # Exponential, capped at OUTBOX_BACKOFF_MAX_SECONDS, from the end of the attempt;
        # the next task waits for exactly that moment.
        assert delivery.next_attempt_at - last.finished_at == timedelta(seconds=wait)
        (task,) = DBTaskResult.objects.filter(status=TaskResultStatus.READY)
        assert task.run_after == delivery.next_attempt_at
        assert tasks_run_ready() == 0  # not due yet
        deliveries_make_due()

    with caplog.at_level(logging.WARNING, logger="notifications"):
        assert tasks_run_ready() == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.DEAD, 4)
    assert (delivery.last_status_code, delivery.last_error) == (503, "HTTP 503")
    assert not DBTaskResult.objects.filter(status=TaskResultStatus.READY).exists()
    assert f"delivery {delivery.pk} (forward) is dead after 4 attempts" in caplog.text
    # Every attempt carried the same webhook-id, each with a fresh valid signature.
    requests = receiver.requests()
    assert {r.headers["webhook-id"] for r in requests} == {delivery.message_id}
    for request in requests:
        verify_standard_webhook(
            secret=FORWARD_SECRET, headers=request.headers, body=request.get_data()
        )
    assert len(requests) == 4


def test_a_dead_delivery_shows_in_admin_and_its_retry_action_delivers_it(
    signed_post, httpserver, admin_client, settings
):
    settings.OUTBOX_MAX_ATTEMPTS = 1
    receiver = Receiver(httpserver, "/crm", status=500)
    forward_destination(receiver)
    signed_post(retell.fixture_bytes("call_ended"))
    tasks_run_ready()
    delivery = Delivery.objects.get(state=DeliveryState.DEAD)

    page = admin_client.get("/admin/notifications/delivery/?state__exact=dead")
    assert page.status_code == 200
    assert b"HTTP 500" in page.content
    detail = admin_client.get(f"/admin/notifications/delivery/{delivery.pk}/change/")
    assert detail.status_code == 200
    assert b"HTTP 500" in detail.content

    receiver.status = 200
    response = admin_client.post(
        "/admin/notifications/delivery/",
        {"action": "retry_now", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    assert tasks_run_ready() == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.SUCCEEDED, 2)
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]


def test_two_tasks_for_one_delivery_send_it_once(signed_post, httpserver):
    receiver = Receiver(httpserver, "/crm")
    forward_destination(receiver)
    signed_post(retell.fixture_bytes("call_ended"))
    delivery = Delivery.objects.get()
    assert delivery_retry(delivery_ids=[delivery.pk]) == 1  # a second task, same delivery
    assert DBTaskResult.objects.filter(status=TaskResultStatus.READY).count() == 2

    assert tasks_run_ready() == 2
    assert len(receiver.requests()) == 1
    returns = sorted(
        str(value) for value in DBTaskResult.objects.values_list("return_value", flat=True)
    )
    assert returns == ["skipped", "succeeded"]
    assert delivery_retry(delivery_ids=[delivery.pk]) == 0  # succeeded: never again


def test_outbox_requeue_recovers_a_delivery_whose_worker_died_mid_attempt(signed_post, httpserver):
    receiver = Receiver(httpserver, "/crm")
    forward_destination(receiver)
    signed_post(retell.fixture_bytes("call_ended"))
    # A worker claimed the task and the delivery, then was killed: both stay claimed.
    DBTaskResult.objects.get().claim("killed-worker")
    claimed_at = timezone.now() - timedelta(minutes=2)
    Delivery.objects.update(
        attempts=1, next_attempt_at=claimed_at, locked_until=claimed_at + CLAIM_LEASE
    )
    assert tasks_run_ready() == 0
    assert requeue() == "Re-enqueued 0 overdue delivery(ies).\n"  # may still be in flight

    claimed_at = timezone.now() - timedelta(minutes=30)
    Delivery.objects.update(next_attempt_at=claimed_at, locked_until=claimed_at + CLAIM_LEASE)
    assert requeue() == "Re-enqueued 1 overdue delivery(ies).\n"
    assert tasks_run_ready() == 1
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.attempts) == (DeliveryState.SUCCEEDED, 2)
    assert len(receiver.requests()) == 1
    assert requeue() == "Re-enqueued 0 overdue delivery(ies).\n"


def requeue() -> str:
    out = io.StringIO()
    call_command("outbox_requeue", stdout=out)
    return out.getvalue()


# --- Destinations from the environment ----------------------------------------------------


def test_forward_urls_from_the_environment_become_read_only_destinations(
    signed_post, httpserver, settings, admin_client
):
    receiver = Receiver(httpserver, "/env")
    settings.FORWARD_URLS = [receiver.url]
    settings.FORWARD_SIGNING_SECRET = FORWARD_SECRET
    signed_post(retell.fixture_bytes("call_started"))
    tasks_run_ready()
    destination = Destination.objects.get()
    assert (destination.env_key, destination.url, destination.enabled) == (
        "env:forward:1",
        receiver.url,
        True,
    )
    assert destination.signing_secret == ""  # the secret stays in the environment
    request = receiver.requests()[0]
    verify_standard_webhook(secret=FORWARD_SECRET, headers=request.headers, body=request.get_data())
    page = admin_client.get(f"/admin/notifications/destination/{destination.pk}/change/")
    assert b'name="url"' not in page.content  # shown, not editable

    settings.FORWARD_URLS = []
    signed_post(retell.fixture_bytes("call_ended"))
    destination.refresh_from_db()
    assert destination.enabled is False
    assert Delivery.objects.count() == 1


def test_the_slack_url_from_the_environment_is_used_but_not_stored(
    signed_post, httpserver, settings
):
    receiver = Receiver(httpserver, "/services/T0/B0/secret-token")
    settings.SLACK_WEBHOOK_URL = receiver.url
    settings.SLACK_NOTIFY_EVENTS = ["call_ended"]
    signed_post(retell.fixture_bytes("call_ended"))
    tasks_run_ready()
    assert len(receiver.requests()) == 1
    destination = Destination.objects.get()
    assert "secret-token" not in destination.url
    assert destination.events == "call_ended"


def test_the_settings_check_requires_a_forwarding_secret(settings):
    settings.FORWARD_URLS = ["https://crm.example.com/hooks"]
    settings.FORWARD_SIGNING_SECRET = ""
    assert [error.id for error in outbox_settings_check()] == ["notifications.E002"]
    settings.FORWARD_SIGNING_SECRET = FORWARD_SECRET
    settings.SLACK_NOTIFY_EVENTS = ["call_exploded"]
    assert [error.id for error in outbox_settings_check()] == ["notifications.E003"]
    settings.SLACK_NOTIFY_EVENTS = []
    settings.FORWARD_URLS = ["http://crm.example.com/hooks"]
    assert [error.id for error in outbox_settings_check()] == ["notifications.E001"]


# --- Recording capture ----------------------------------------------------------------------

AUDIO = b"RIFF" + bytes(range(256)) * 64


def test_it_captures_the_recording_once_and_serves_it_to_staff(
    signed_post, httpserver, settings, admin_client, client
):
    settings.RECORDINGS_CAPTURE = True
    httpserver.expect_request("/rec/call.wav", method="GET").respond_with_data(
        AUDIO, content_type="audio/wav"
    )
    url = httpserver.url_for("/rec/call.wav")
    signed_post(event_body("call_ended", recording_url=url))
    signed_post(event_body("call_analyzed", recording_url=url))
    delivery = Delivery.objects.get(kind=DeliveryKind.RECORDING)
    assert tasks_run_ready() == 1

    delivery.refresh_from_db()
    recording = Recording.objects.get()
    assert delivery.state == DeliveryState.SUCCEEDED
    assert (recording.size_bytes, recording.sha256, recording.content_type) == (
        len(AUDIO),
        hashlib.sha256(AUDIO).hexdigest(),
        "audio/wav",
    )
    assert recording.file.read() == AUDIO

    download = f"/admin/notifications/recording/{recording.pk}/download/"
    response = admin_client.get(download)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == AUDIO
    assert "call_2f7c1e9a4b3d4e0f8a6b.wav" in response["Content-Disposition"]
    assert client.get(download).status_code == 302  # to the admin login


def test_recording_capture_is_off_by_default(signed_post):
    signed_post(retell.fixture_bytes("call_ended"))
    assert not Delivery.objects.exists()


def test_a_recording_that_cannot_be_fetched_is_retried(signed_post, httpserver, settings):
    settings.RECORDINGS_CAPTURE = True
    httpserver.expect_request("/rec/gone.wav").respond_with_data("expired", status=403)
    signed_post(event_body("call_ended", recording_url=httpserver.url_for("/rec/gone.wav")))
    tasks_run_ready()
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.last_error) == (DeliveryState.PENDING, "HTTP 403")
    assert not Recording.objects.exists()
    assert not list((settings.MEDIA_ROOT / "tmp").iterdir())
