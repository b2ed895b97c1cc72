from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.db import DatabaseError

from calls import services, signing
from calls.models import Call, CallEvent
from tests import retell
from tests.asgi import AsgiClient

pytestmark = pytest.mark.django_db

OK = {"received": True}
UNAUTHORIZED = {"message": "Unauthorized"}


@pytest.fixture(params=["drf_view", "asgi_endpoint"])
def webhook_client(request: pytest.FixtureRequest, client: Any) -> Any:
    """Every test here runs against both transports of POST /webhook."""
    return client if request.param == "drf_view" else AsgiClient()


def body_json(response: Any) -> Any:
    return json.loads(response.content)


def assert_nothing_stored() -> None:
    assert Call.objects.count() == 0
    assert CallEvent.objects.count() == 0


def test_it_stores_a_signed_delivery(signed_post):
    body = retell.fixture_bytes("call_ended")
    response = signed_post(body, REMOTE_ADDR="100.20.5.228")
    assert response.status_code == 200
    assert body_json(response) == OK
    event = CallEvent.objects.get()
    assert event.raw_body.encode() == body
    assert event.event == "call_ended"
    assert event.payload_key == "call"
    assert event.delivery_count == 1
    assert event.source_ip == "100.20.5.228"
    assert event.key_fingerprint == signing.key_fingerprint(retell.PRIMARY_KEY)
    call = event.call
    assert call.call_id == "call_2f7c1e9a4b3d4e0f8a6b"
    assert call.status == "ended"
    assert call.transcript.startswith("Agent: Hi, this is Ava")


def test_it_records_which_rotated_key_verified(signed_post):
    response = signed_post(retell.fixture_bytes("call_started"), key=retell.SECONDARY_KEY)
    assert response.status_code == 200
    event = CallEvent.objects.get()
    assert event.key_fingerprint == signing.key_fingerprint(retell.SECONDARY_KEY)


def test_it_accepts_the_legacy_data_body(signed_post):
    response = signed_post(retell.fixture_bytes("legacy_data_call_ended"))
    assert (response.status_code, body_json(response)) == (200, OK)
    assert CallEvent.objects.get().payload_key == "data"
    assert Call.objects.get().duration_ms == 14870


def test_it_stores_and_acknowledges_unknown_events(signed_post):
    body = retell.compact({"event": "call_teleported", "call": {"call_id": "call_x"}})
    response = signed_post(body)
    assert (response.status_code, body_json(response)) == (200, OK)
    assert CallEvent.objects.get().event == "call_teleported"


def test_it_counts_a_duplicate_delivery_without_a_new_row(signed_post):
    body = retell.fixture_bytes("call_analyzed")
    assert signed_post(body).status_code == 200
    before = Call.objects.values().get()
    # Retell's retry: same bytes, possibly a fresh signature time.
    response = signed_post(body, timestamp_ms=retell.now_ms() - 1000)
    assert (response.status_code, body_json(response)) == (200, OK)
    event = CallEvent.objects.get()
    assert event.delivery_count == 2
    assert event.last_received_at >= event.first_received_at
    after = Call.objects.values().get()
    assert {k: v for k, v in after.items() if k != "updated_at"} == {
        k: v for k, v in before.items() if k != "updated_at"
    }


def test_it_keeps_out_of_order_deliveries_consistent(signed_post):
    for name in ("call_analyzed", "call_started", "call_ended"):
        assert signed_post(retell.fixture_bytes(name)).status_code == 200
    call = Call.objects.get()
    assert call.status == "ended"
    assert call.user_sentiment == "Positive"
    assert call.events.count() == 3


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing_header"),
        ("v=abc,d=123", "malformed_header"),
    ],
)
def test_it_rejects_unsigned_or_malformed(webhook_client, header, reason, caplog):
    headers = {} if header is None else {"X-Retell-Signature": header}
    with caplog.at_level(logging.WARNING, logger="calls"):
        response = webhook_client.post(
            "/webhook",
            data=retell.fixture_bytes("call_ended"),
            content_type="application/json",
            headers=headers,
        )
    assert (response.status_code, body_json(response)) == (401, UNAUTHORIZED)
    assert_nothing_stored()
    [record] = [r for r in caplog.records if r.name == "calls.webhook"]
    assert record.reason == reason
    assert "José" not in caplog.text
    assert "transcript" not in caplog.text


def test_it_rejects_a_wrong_key(signed_post):
    response = signed_post(retell.fixture_bytes("call_ended"), key="key_not_ours")
    assert (response.status_code, body_json(response)) == (401, UNAUTHORIZED)
    assert_nothing_stored()


def test_it_rejects_a_tampered_body(signed_post):
    body = retell.fixture_bytes("call_ended")
    header = retell.signature(body)
    response = signed_post(body.replace(b"agent_hangup", b"user_hangup_"), header=header)
    assert (response.status_code, body_json(response)) == (401, UNAUTHORIZED)
    assert_nothing_stored()


@pytest.mark.parametrize("offset_ms", [-300_001 - 5_000, 300_001 + 5_000])
def test_it_rejects_stale_and_future_signatures(signed_post, offset_ms):
    body = retell.fixture_bytes("call_ended")
    response = signed_post(body, timestamp_ms=retell.now_ms() + offset_ms)
    assert (response.status_code, body_json(response)) == (401, UNAUTHORIZED)
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{oops", "Body is not valid UTF-8 JSON."),
        (b"[]", "Body must be a JSON object."),
        (b'{"call":{"call_id":"c"}}', "Missing 'event': a non-empty string is required."),
        (
            b'{"event":"call_ended","call":{}}',
            "Missing 'call_id': the call object needs a non-empty string id.",
        ),
    ],
)
def test_it_answers_400_for_signed_but_unusable_bodies(signed_post, body, message):
    response = signed_post(body)
    assert (response.status_code, body_json(response)) == (400, {"message": message})
    assert_nothing_stored()


def test_it_answers_413_for_a_body_over_the_limit(signed_post, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    body = retell.fixture_bytes("call_ended")
    response = signed_post(body)
    assert (response.status_code, body_json(response)) == (
        413,
        {"message": "Body exceeds 1024 bytes."},
    )
    assert_nothing_stored()


def test_it_checks_the_real_length_when_content_length_lies(signed_post, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    body = retell.fixture_bytes("call_ended")
    response = signed_post(body, CONTENT_LENGTH="10")
    # Django trusts Content-Length to bound the stream: only 10 bytes are read, which are
    # not what was signed, so the delivery is refused rather than stored truncated.
    assert response.status_code == 401
    assert_nothing_stored()


def test_it_answers_405_to_get(webhook_client):
    response = webhook_client.get("/webhook")
    assert response.status_code == 405
    assert body_json(response) == {"message": "Method Not Allowed"}


def test_it_answers_json_whatever_the_accept_header(signed_post):
    response = signed_post(retell.fixture_bytes("call_started"), HTTP_ACCEPT="text/html")
    assert (response.status_code, body_json(response)) == (200, OK)


def test_it_answers_500_and_keeps_nothing_when_the_merge_fails(signed_post, monkeypatch, caplog):
    def broken(**kwargs: Any) -> list[str]:
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(services, "call_merge", broken)
    with caplog.at_level(logging.ERROR):
        response = signed_post(retell.fixture_bytes("call_ended"))
    assert (response.status_code, body_json(response)) == (
        500,
        {"message": "Internal Server Error"},
    )
    assert_nothing_stored()
    monkeypatch.undo()
    # Retell's retry of the same delivery then succeeds.
    response = signed_post(retell.fixture_bytes("call_ended"))
    assert response.status_code == 200
    assert CallEvent.objects.count() == 1


class TestSourceAllowlist:
    @pytest.fixture(autouse=True)
    def _allowlist(self, settings):
        settings.WEBHOOK_ALLOWED_IPS = ["100.20.5.228", "10.9.0.0/16"]

    def test_it_accepts_an_allowed_address(self, signed_post):
        response = signed_post(retell.fixture_bytes("call_ended"), REMOTE_ADDR="100.20.5.228")
        assert response.status_code == 200

    def test_it_accepts_an_address_inside_an_allowed_network(self, signed_post):
        response = signed_post(retell.fixture_bytes("call_ended"), REMOTE_ADDR="10.9.4.4")
        assert response.status_code == 200

    def test_it_refuses_other_addresses_with_403(self, signed_post):
        response = signed_post(retell.fixture_bytes("call_ended"), REMOTE_ADDR="203.0.113.9")
        assert (response.status_code, body_json(response)) == (403, {"message": "Forbidden"})
        assert_nothing_stored()

    def test_it_ignores_forwarded_for_without_trusted_proxies(self, signed_post):
        response = signed_post(
            retell.fixture_bytes("call_ended"),
            REMOTE_ADDR="203.0.113.9",
            HTTP_X_FORWARDED_FOR="100.20.5.228",
        )
        assert response.status_code == 403

    def test_it_reads_forwarded_for_behind_one_trusted_proxy(self, signed_post, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        response = signed_post(
            retell.fixture_bytes("call_ended"),
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="6.6.6.6, 100.20.5.228",
        )
        assert response.status_code == 200
        assert CallEvent.objects.get().source_ip == "100.20.5.228"

    def test_a_forged_leftmost_forwarded_for_does_not_pass(self, signed_post, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        response = signed_post(
            retell.fixture_bytes("call_ended"),
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR="100.20.5.228, 6.6.6.6",
        )
        assert response.status_code == 403
