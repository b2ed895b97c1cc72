"""calls/migrations/0006: Call.call_object becomes a reference to its event, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps.registry import Apps

from tests.schema_history import (
    delivery_body,
    migrate,
    restored_compression,
    schema_at,
    sha256_hex,
)

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("calls", "0005_callevent_payload_from_raw_body")
AFTER = ("calls", "0006_call_object_event")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

ENDED = {"call_id": "call_a", "call_status": "ended"}
ANALYZED = {**ENDED, "call_analysis": {"call_summary": "José booked Thursday."}}
LEGACY = {"call_id": "call_b", "call_status": "not_connected"}


@pytest.fixture
def old_schema() -> Iterator[Apps]:
    with schema_at(BEFORE) as apps:
        yield apps


@pytest.fixture
def winners(old_schema: Apps) -> dict[str, int | None]:
    """Calls as 0005 stored them; each call's winning event id (None: none to find)."""
    Call = old_schema.get_model("calls", "Call")
    CallEvent = old_schema.get_model("calls", "CallEvent")

    def add_call(call_id: str, call_object: Any, digest: str | None) -> Any:
        versions = {"call_object": [50, 0, digest]} if digest else {"transcript": [10, 0, "x"]}
        return Call.objects.create(
            call_id=call_id, call_object=call_object, field_versions=versions
        )

    def add_event(call: Any, name: str, key: str, document: dict[str, Any]) -> int:
        raw_body = delivery_body(name, document, key=key)
        return CallEvent.objects.create(
            call=call,
            event=name,
            payload_key=key,
            raw_body=raw_body,
            body_sha256=sha256_hex(raw_body),
            first_received_at=NOW,
            last_received_at=NOW,
        ).pk

    a = add_call("call_a", ANALYZED, sha256_hex(delivery_body("call_analyzed", ANALYZED)))
    add_event(a, "call_ended", "call", ENDED)
    analyzed = add_event(a, "call_analyzed", "call", ANALYZED)
    b = add_call("call_b", LEGACY, sha256_hex(delivery_body("call_ended", LEGACY, key="data")))
    legacy = add_event(b, "call_ended", "data", LEGACY)
    add_call("call_c", {"call_id": "call_c"}, "f" * 64)  # its event is gone
    add_call("call_d", None, None)  # only the call socket heard of it
    return {"call_a": analyzed, "call_b": legacy, "call_c": None, "call_d": None}


def test_forwards_points_each_call_at_the_event_its_version_names(winners):
    apps = migrate(AFTER)
    Call = apps.get_model("calls", "Call")
    assert dict(Call.objects.values_list("call_id", "call_object_event")) == winners


def test_backwards_copies_the_call_objects_back_from_their_events(winners):
    migrate(AFTER)
    apps = migrate(BEFORE)
    Call = apps.get_model("calls", "Call")
    assert dict(Call.objects.values_list("call_id", "call_object")) == {
        "call_a": ANALYZED,
        "call_b": LEGACY,
        "call_c": None,  # the reference it never had
        "call_d": None,
    }
    apps = migrate(AFTER)  # and forwards again: the same references
    Call = apps.get_model("calls", "Call")
    assert dict(Call.objects.values_list("call_id", "call_object_event")) == winners


def test_backwards_on_postgresql_compresses_the_column_as_0004_did(old_schema, postgres_only):
    restored = restored_compression(
        table="calls_call", column="call_object", before=BEFORE, after=AFTER
    )
    assert restored == "l"
