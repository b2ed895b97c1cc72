"""Recording capture: fetched once, stored, served to staff; off by default; retried."""

from __future__ import annotations

import hashlib

import pytest

from notifications.models import Delivery, DeliveryKind, DeliveryState, Recording
from tests import retell
from tests.outbox import tasks_run_ready

pytestmark = pytest.mark.django_db


AUDIO = b"RIFF" + bytes(range(256)) * 64


def test_it_captures_the_recording_once_and_serves_it_to_staff(
    signed_post, httpserver, settings, admin_client, client
):
    settings.RECORDINGS_CAPTURE = True
    httpserver.expect_request("/rec/call.wav", method="GET").respond_with_data(
        AUDIO, content_type="audio/wav"
    )
    url = httpserver.url_for("/rec/call.wav")
    signed_post(retell.fixture_with("call_ended", recording_url=url))
    signed_post(retell.fixture_with("call_analyzed", recording_url=url))
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
    signed_post(
        retell.fixture_with("call_ended", recording_url=httpserver.url_for("/rec/gone.wav"))
    )
    tasks_run_ready()
    delivery = Delivery.objects.get()
    assert (delivery.state, delivery.last_error) == (DeliveryState.PENDING, "HTTP 403")
    assert not Recording.objects.exists()
    assert not list((settings.MEDIA_ROOT / "tmp").iterdir())
