"""Forwarding: a normalised event signed per Standard Webhooks, once, to the chosen endpoints."""

from __future__ import annotations

import json

import pytest
from django_tasks_db.models import DBTaskResult

from notifications.models import Delivery
from tests import retell
from tests.outbox import (
    FORWARD_SECRET,
    Receiver,
    forward_destination,
    tasks_run_ready,
    verify_standard_webhook,
)

pytestmark = pytest.mark.django_db


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
