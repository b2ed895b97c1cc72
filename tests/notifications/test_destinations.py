"""Destinations from the environment, and the start-up check of their settings."""

from __future__ import annotations

import pytest

from notifications.checks import outbox_settings_check
from notifications.models import Delivery, Destination
from tests import retell
from tests.outbox import FORWARD_SECRET, Receiver, tasks_run_ready, verify_standard_webhook

pytestmark = pytest.mark.django_db


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
