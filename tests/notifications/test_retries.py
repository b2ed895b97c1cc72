"""Failed attempts: backoff, death, the admin's retry, duplicate tasks, lost tasks requeued."""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from notifications.actions import delivery_retry
from notifications.attempts import CLAIM_LEASE
from notifications.models import Delivery, DeliveryState
from tests import retell
from tests.outbox import (
    FORWARD_SECRET,
    Receiver,
    deliveries_make_due,
    forward_destination,
    tasks_run_ready,
    verify_standard_webhook,
)

pytestmark = pytest.mark.django_db


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
