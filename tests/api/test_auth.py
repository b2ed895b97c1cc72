"""Who may read the API: bearer tokens, admin sessions, staff-only raw bodies; token command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, token_digest
from accounts.services import api_token_create
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


ENDPOINTS = [
    "/api/calls/",
    "/api/calls/call_pinned/",
    "/api/calls/call_pinned/transcript/",
    "/api/calls/export.csv",
    "/api/events/",
    "/api/events/1/",
    "/api/events/1/raw/",
    "/api/stats/",
    "/api/schema/",
    "/api/docs/",
]


@pytest.mark.usefixtures("pinned_call")
@pytest.mark.parametrize("url", ENDPOINTS)
def test_it_answers_401_json_without_credentials(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.usefixtures("pinned_call")
@pytest.mark.parametrize("url", ENDPOINTS)
def test_it_serves_every_endpoint_to_a_bearer_token(url):
    _, token = api_token_create(user=StaffFactory.create())
    response = APIClient().get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer rh_wrong", "Bearer", "Bearer two parts", "bearer rh_wrong"],
)
def test_it_refuses_a_bad_token(header):
    response = APIClient().get("/api/calls/", headers={"Authorization": header})
    assert response.status_code == 401


def test_it_refuses_the_token_of_an_inactive_user():
    user = UserFactory.create(is_active=False)
    _, token = api_token_create(user=user)
    response = APIClient().get("/api/calls/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_it_records_when_a_token_was_used(user):
    row, token = api_token_create(user=user)
    assert row.last_used_at is None
    APIClient().get("/api/calls/", headers={"Authorization": f"Bearer {token}"})
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_it_accepts_an_admin_session(user):
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/calls/").status_code == 200


@pytest.mark.usefixtures("pinned_call")
def test_it_keeps_raw_bodies_from_non_staff(api):
    response = api.get("/api/events/1/raw/")
    assert response.status_code == 403
    assert "raw_body" not in response.content.decode()


def test_it_keeps_the_webhook_on_signatures_only():
    # No API credentials make an unsigned webhook acceptable.
    _, token = api_token_create(user=StaffFactory.create())
    response = APIClient().post(
        "/webhook",
        data=b"{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_create_api_token_prints_the_token_last_and_stores_only_its_digest(user):
    out, err = StringIO(), StringIO()
    call_command("create_api_token", user.username, "--name", "ci", stdout=out, stderr=err)
    token = out.getvalue().strip().splitlines()[-1]
    assert token.startswith("rh_")
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.prefix) == (user, "ci", token[:10])
    assert row.digest == token_digest(token)
    assert token not in row.digest
    assert (
        APIClient().get("/api/calls/", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )


def test_create_api_token_refuses_an_unknown_user():
    with pytest.raises(Exception, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost", stdout=StringIO(), stderr=StringIO())
