from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from calls.merge import observation_version
from calls.payloads import (
    MERGE_KEYS,
    TRANSCRIPT_KEYS,
    PayloadError,
    WebhookEvent,
    call_fields,
    ms_to_datetime,
    parse_webhook,
    parse_webhook_for_merge,
)
from tests import retell

BOTH_PARSERS = pytest.mark.parametrize("parse", [parse_webhook, parse_webhook_for_merge])


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
@BOTH_PARSERS
def test_it_explains_unusable_bodies(parse: Any, body: bytes, message: str):
    with pytest.raises(PayloadError) as caught:
        parse(body)
    assert str(caught.value) == message


@BOTH_PARSERS
def test_it_refuses_an_absurdly_long_call_id(parse: Any):
    with pytest.raises(PayloadError, match="longer than 128"):
        parse(retell.compact({"event": "call_ended", "call": {"call_id": "c" * 129}}))


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


# --- parse_webhook_for_merge: what the merge reads, the transcript's words not built --------


def _as_merged(event: WebhookEvent) -> tuple[Any, ...]:
    """What the merge takes from a parsed delivery: names, columns, and the version (which
    counts the transcript's turns); the transcript documents themselves by turn count."""
    fields = call_fields(event.call)
    for name in TRANSCRIPT_KEYS:
        if name in fields:
            fields[name] = len(fields[name])
    version = observation_version(event=event.event, call=event.call, body_sha256="")
    return event.event, event.call_id, event.payload_key, fields, version


def _merge_samples() -> list[bytes]:
    from bench.webhook_bodies import CALL_ID_SLOT, render_call

    rng = random.Random(7)
    rendered = [body for _ in range(4) for body in render_call(rng, "payloads")]
    names = [path.stem for path in retell.FIXTURES.glob("*.json")]
    return [
        *(body.replace(CALL_ID_SLOT.encode(), b"call_sample") for body in rendered),
        *(retell.fixture_bytes(name) for name in names),
    ]


@pytest.mark.parametrize("body", _merge_samples())
def test_the_merge_reads_the_same_from_either_parser(body: bytes):
    whole, for_merge = parse_webhook(body), parse_webhook_for_merge(body)
    assert (whole.complete, for_merge.complete) == (True, False)
    assert _as_merged(for_merge) == _as_merged(whole)


class _Recording(dict[str, Any]):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)


def test_it_declares_every_key_call_fields_reads():
    # MERGE_KEYS is what call_fields looks up in an empty call object. A key it read only
    # when another is present would be missing there, and the writer's merge never see it.
    call = _Recording(parse_webhook(retell.fixture_bytes("call_analyzed")).call)
    call_fields(call)
    assert call.read <= {*MERGE_KEYS, *TRANSCRIPT_KEYS}
    assert call.read >= {"agent_id", "call_analysis", "transcript_object"}


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"call_ended","call":{"call_id":"c1","metadata":{"x":NaN}}}',
        b'{"event":"call_ended","call":{"call_id":"c1","agent_name":"\\ud800"}}',
        b'{"event":"call_ended","call":{"call_id":"c1","transcript_object":"not a list"}}',
        b'{"event":"call_ended","call":{"call_id":"c1","transcript_object":[1, 2]}}',
        b'{"event":"call_ended","call":"c1","data":{"call_id":"c1"}}',
    ],
)
def test_what_it_cannot_read_so_is_parsed_whole_as_before(body: bytes):
    assert parse_webhook_for_merge(body) == parse_webhook(body)


def test_it_keeps_numbers_too_long_for_64_bits_exact():
    big = 123456789012345678901234567890
    body = retell.compact(
        {"event": "call_ended", "call": {"call_id": "c1", "metadata": {"n": big}}}
    )
    assert parse_webhook_for_merge(body).call["metadata"] == {"n": big}


def test_it_reads_the_legacy_data_key_for_the_merge_too():
    event = parse_webhook_for_merge(retell.fixture_bytes("legacy_data_call_ended"))
    assert (event.payload_key, event.call_id) == ("data", "call_2f7c1e9a4b3d4e0f8a6b")
