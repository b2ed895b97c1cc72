"""calls/live.py: the live monitor's pages (the socket's side is in test_live_consumer.py)."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def live_config(response) -> dict[str, str]:
    html = response.content.decode()
    start = html.index('<script id="live-config" type="application/json">') + 49
    return json.loads(html[start : html.index("</script>", start)])


def test_it_sends_anonymous_visitors_to_the_login(client: Client):
    response = client.get("/live/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/live/"


def test_it_sends_users_who_are_not_staff_to_the_login(client: Client):
    client.force_login(UserFactory.create())
    assert client.get("/live/call_x/").status_code == 302


def test_it_shows_staff_the_list_wired_to_its_socket(client: Client):
    client.force_login(StaffFactory.create())
    response = client.get("/live/")
    assert response.status_code == 200
    assert live_config(response) == {"socket": "/ws/calls/"}
    assert b"calls/live.js" in response.content
    assert b"In progress" in response.content


def test_a_calls_page_subscribes_to_that_call_even_before_it_exists(client: Client):
    client.force_login(StaffFactory.create())
    response = client.get("/live/call%20with%20spaces/")
    assert response.status_code == 200
    assert live_config(response) == {"socket": "/ws/calls/call%20with%20spaces/"}
