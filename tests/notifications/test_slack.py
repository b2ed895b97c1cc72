"""Slack messages: what they say, masked numbers unless allowed, only the chosen events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from calls.models import Call
from notifications.models import Delivery, Destination, DestinationKind
from tests import retell
from tests.outbox import Receiver, tasks_run_ready

pytestmark = pytest.mark.django_db


def slack_destination(receiver: Receiver, **fields: Any) -> Destination:
    return Destination.objects.create(
        name="Ops channel", kind=DestinationKind.SLACK, url=receiver.url, **fields
    )


def slack_fields(message: dict[str, Any]) -> dict[str, str]:
    fields = message["blocks"][1]["fields"]
    return dict(field["text"].lstrip("*").split("*\n", 1) for field in fields)


def test_it_posts_a_slack_message_with_summary_duration_sentiment_and_outcome(
    signed_post, httpserver
):
    receiver = Receiver(httpserver, "/slack")
    slack_destination(receiver)
    body = retell.fixture_with(
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
                    retell.fixture_with(
                        "call_ended", disconnection_reason="error_llm_websocket_open"
                    )
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
