"""End to end with committed transactions: the webhook, the real worker process, receivers.

``transactional_db`` so the webhook's transaction really commits (or really rolls back)
and the ``manage.py db_worker`` subprocess sees exactly what a production worker would.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from django_tasks_db.models import DBTaskResult

from calls import services
from calls.models import CallEvent
from notifications.models import Delivery, DeliveryState, Destination, DestinationKind
from tests import retell
from tests.outbox import (
    FORWARD_SECRET,
    Receiver,
    db_worker_batch,
    deliveries_make_due,
    tasks_run_ready,
    verify_standard_webhook,
)

pytestmark = pytest.mark.django_db(transaction=True)

CALL_IDS = ["call_outbox_a", "call_outbox_b"]
EVENTS = ["call_started", "call_ended", "call_analyzed"]


@pytest.fixture(autouse=True)
def _outbox_settings(settings: Any) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    settings.FORWARD_URLS = []
    settings.RECORDINGS_CAPTURE = False


@pytest.fixture
def receivers(httpserver) -> dict[str, Receiver]:
    """A Slack channel and two forwarding endpoints, each its own destination."""
    found = {name: Receiver(httpserver, f"/{name}") for name in ("slack", "crm", "warehouse")}
    Destination.objects.create(name="slack", kind=DestinationKind.SLACK, url=found["slack"].url)
    for name in ("crm", "warehouse"):
        Destination.objects.create(
            name=name,
            kind=DestinationKind.FORWARD,
            url=found[name].url,
            signing_secret=FORWARD_SECRET,
        )
    return found


def post_all_events(signed_post) -> list[int]:
    statuses = []
    for call_id in CALL_IDS:
        for name in EVENTS:
            body = retell.compact(retell.with_call_id(retell.fixture_json(name), call_id))
            statuses.append(signed_post(body).status_code)
    # A Retell retry of one delivery: stored once, delivered once.
    again = retell.compact(retell.with_call_id(retell.fixture_json("call_ended"), CALL_IDS[0]))
    statuses.append(signed_post(again).status_code)
    return statuses


def delivered_ids(receiver: Receiver) -> Counter[str]:
    """How many times each message was accepted (2xx) by the receiver."""
    return Counter(
        request.headers.get("webhook-id") or json.loads(request.get_data())["text"]
        for request in receiver.requests(status=200)
    )


def test_webhooks_succeed_while_receivers_are_down_and_are_delivered_once_when_back(
    signed_post, receivers, httpserver
):
    for receiver in receivers.values():
        receiver.status = 503

    assert post_all_events(signed_post) == [200] * 7
    # The requests themselves never touched the network: nothing reached any receiver.
    assert httpserver.log == []
    assert Delivery.objects.count() == 6 + 6 + 4  # forwards x2, Slack: ended + analyzed

    db_worker_batch()
    # Every task ran to completion: a receiver's failure is the delivery's state, not a crash.
    # (the READY ones are the scheduled retries).
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL", "READY"}
    assert set(Delivery.objects.values_list("state", "attempts")) == {(DeliveryState.PENDING, 1)}
    assert all(len(r.requests(status=503)) > 0 for r in receivers.values())

    for receiver in receivers.values():
        receiver.status = 200
    deliveries_make_due()
    db_worker_batch()
    deliveries_make_due()
    db_worker_batch()  # nothing left: a third pass must not send anything again

    assert set(Delivery.objects.values_list("state", flat=True)) == {DeliveryState.SUCCEEDED}
    for name in ("crm", "warehouse"):
        expected = set(
            Delivery.objects.filter(destination__name=name).values_list("message_id", flat=True)
        )
        assert delivered_ids(receivers[name]) == Counter({message: 1 for message in expected})
        for request in receivers[name].requests(status=200):
            verify_standard_webhook(
                secret=FORWARD_SECRET, headers=request.headers, body=request.get_data()
            )
    slack = delivered_ids(receivers["slack"])
    assert sorted(slack.values()) == [1, 1, 1, 1]


def test_a_webhook_whose_transaction_rolls_back_never_runs_its_tasks(
    signed_post, receivers, monkeypatch
):
    enqueue = services.outbox_enqueue_for_delivery
    enqueued: list[int] = []

    def enqueue_then_fail(**kwargs: Any) -> Any:
        enqueue(**kwargs)
        # The tasks really were written, inside the webhook's transaction...
        enqueued.append(DBTaskResult.objects.count())
        raise RuntimeError("the database went away before commit")

    monkeypatch.setattr(services, "outbox_enqueue_for_delivery", enqueue_then_fail)
    response = signed_post(retell.fixture_bytes("call_analyzed"))

    assert response.status_code == 500  # so Retell retries
    assert enqueued == [3]
    # ...and went with it.
    assert DBTaskResult.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert CallEvent.objects.count() == 0
    assert tasks_run_ready() == 0
    db_worker_batch()
    assert all(receiver.requests() == [] for receiver in receivers.values())
