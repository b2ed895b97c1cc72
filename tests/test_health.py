from __future__ import annotations

import pytest
from django.db import OperationalError

from calls import views

pytestmark = pytest.mark.django_db


def test_ping_answers_without_touching_anything(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/ping")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_health_is_ok_when_database_and_channel_layer_answer(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "channel_layer": "ok"},
    }


def test_health_is_503_when_the_database_is_down(client, monkeypatch):
    def down() -> bool:
        raise OperationalError("connection refused")

    monkeypatch.setattr(views, "_database_ok", down)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "down", "channel_layer": "ok"}


def test_health_is_503_when_the_channel_layer_is_down(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Nothing listens on port 1: the layer cannot connect.
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "channel_layer": "down"},
    }


def test_health_refuses_other_methods(client):
    assert client.post("/health").status_code == 405
