from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from calls.payloads import PayloadError, call_fields, ms_to_datetime, parse_webhook
from tests import retell


def test_it_reads_the_current_call_key():
    event = parse_webhook(retell.fixture_bytes("call_ended"))
    assert (event.event, event.call_id, event.payload_key) == (
        "call_ended",
        "call_2f7c1e9a4b3d4e0f8a6b",
        "call",
    )


def test_it_reads_the_legacy_data_key():
    event = parse_webhook(retell.fixture_bytes("legacy_data_call_ended"))
    assert event.payload_key == "data"
    assert event.call["call_id"] == "call_2f7c1e9a4b3d4e0f8a6b"


def test_it_keeps_unknown_event_names():
    event = parse_webhook(b'{"event":"call_teleported","call":{"call_id":"c1"}}')
    assert event.event == "call_teleported"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "Body is not valid UTF-8 JSON."),
        (b"{not json", "Body is not valid UTF-8 JSON."),
        (b"\xff\xfe{}", "Body is not valid UTF-8 JSON."),
        (b"[1, 2]", "Body must be a JSON object."),
        (b'"call_ended"', "Body must be a JSON object."),
        (b'{"call":{"call_id":"c1"}}', "Missing 'event': a non-empty string is required."),
        (
            b'{"event":7,"call":{"call_id":"c1"}}',
            "Missing 'event': a non-empty string is required.",
        ),
        (
            b'{"event":"call_ended"}',
            "Missing call object: expected an object under 'call' (or legacy 'data').",
        ),
        (
            b'{"event":"call_ended","call":"c1"}',
            "Missing call object: expected an object under 'call' (or legacy 'data').",
        ),
        (
            b'{"event":"call_ended","call":{"agent_id":"a"}}',
            "Missing 'call_id': the call object needs a non-empty string id.",
        ),
        (
            b'{"event":"call_ended","call":{"call_id":42}}',
            "Missing 'call_id': the call object needs a non-empty string id.",
        ),
    ],
)
def test_it_explains_unusable_bodies(body: bytes, message: str):
    with pytest.raises(PayloadError) as caught:
        parse_webhook(body)
    assert str(caught.value) == message


def test_it_refuses_an_absurdly_long_call_id():
    with pytest.raises(PayloadError, match="longer than 128"):
        parse_webhook(retell.compact({"event": "call_ended", "call": {"call_id": "c" * 129}}))


def test_it_converts_milliseconds_to_aware_utc():
    assert ms_to_datetime(1767225600000) == datetime(2026, 1, 1, tzinfo=UTC)
    assert ms_to_datetime(1767225600123) == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, "1767225600000", True, 10**30, [1]])
def test_it_gives_none_for_timestamps_it_cannot_read(value: object):
    assert ms_to_datetime(value) is None


def test_it_maps_a_full_call_object_to_columns():
    fields = call_fields(retell.fixture_json("call_analyzed")["call"])
    assert fields["agent_id"] == "agent_northwind_reception"
    assert fields["agent_version"] == 7
    assert fields["status"] == "ended"
    assert fields["started_at"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert fields["duration_ms"] == 14870
    assert fields["user_sentiment"] == "Positive"
    assert fields["call_successful"] is True
    assert fields["combined_cost"] == Decimal("12.3750")
    assert fields["e2e_latency_p50_ms"] == 812.5
    assert fields["dynamic_variables"]["customer_name"] == "José Núñez"
    assert len(fields["transcript_object"]) == 5


def test_it_leaves_out_absent_and_ill_typed_values():
    fields = call_fields(
        {
            "call_id": "c1",
            "agent_version": "seven",
            "start_timestamp": "yesterday",
            "call_analysis": {"call_successful": "yes", "user_sentiment": "Neutral"},
            "call_cost": {"combined_cost": "lots"},
            "brand_new_field": {"x": 1},
        }
    )
    assert fields == {"user_sentiment": "Neutral"}
