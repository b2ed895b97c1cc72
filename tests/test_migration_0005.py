"""calls/migrations/0005: CallEvent.payload dropped for raw_body, forwards and backwards."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps.registry import Apps

from tests.schema_history import migrate, restored_compression, schema_at

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("calls", "0004_lz4_compression")
AFTER = ("calls", "0005_callevent_payload_from_raw_body")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

ENDED = {"call_id": "call_a", "call_status": "ended", "agent_name": "Zoë"}
SCRUBBED = {"call_id": "call_a", "call_status": "ended"}  # numbers scrubbed the old way
SUMMARY = {"session_id": "s1", "close_code": 1000}


def compact(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


@pytest.fixture
def old_schema() -> Iterator[Apps]:
    with schema_at(BEFORE) as apps:
        yield apps


@pytest.fixture
def events(old_schema: Apps) -> dict[str, int]:
    """Event ids by kind, stored as 0004 stored them."""
    call = old_schema.get_model("calls", "Call").objects.create(call_id="call_a")

    def add(name: str, key: str, payload: Any, raw_body: str, digest: str) -> int:
        return (
            old_schema.get_model("calls", "CallEvent")
            .objects.create(
                call=call,
                event=name,
                payload=payload,
                payload_key=key,
                raw_body=raw_body,
                body_sha256=hashlib.sha256(digest.encode()).hexdigest(),
                first_received_at=NOW,
                last_received_at=NOW,
            )
            .pk
        )

    intact = compact({"event": "call_ended", "call": ENDED})
    return {
        "intact": add("call_ended", "call", ENDED, intact, intact),
        # An old retention scrub blanked raw bodies and kept a scrubbed payload.
        "scrubbed": add("call_ended", "data", SCRUBBED, "", "legacy"),
        "session": add("llm_session", "", SUMMARY, "", "session"),
    }


def raw_bodies(apps: Apps) -> dict[int, str]:
    return dict(apps.get_model("calls", "CallEvent").objects.values_list("pk", "raw_body"))


def test_forwards_keeps_every_payload_in_the_raw_body(events):
    bodies = raw_bodies(migrate(AFTER))
    assert bodies[events["intact"]] == compact({"event": "call_ended", "call": ENDED})
    assert json.loads(bodies[events["scrubbed"]]) == {"event": "call_ended", "data": SCRUBBED}
    assert json.loads(bodies[events["session"]]) == SUMMARY


def test_backwards_fills_the_payload_from_the_raw_body(events):
    migrate(AFTER)
    apps = migrate(BEFORE)
    payloads = dict(apps.get_model("calls", "CallEvent").objects.values_list("pk", "payload"))
    assert payloads == {
        events["intact"]: ENDED,
        events["scrubbed"]: SCRUBBED,
        events["session"]: SUMMARY,
    }
    bodies = raw_bodies(migrate(AFTER))  # and forwards again: nothing left to rewrite
    assert json.loads(bodies[events["scrubbed"]]) == {"event": "call_ended", "data": SCRUBBED}


def test_backwards_on_postgresql_compresses_the_column_as_0004_did(old_schema, postgres_only):
    restored = restored_compression(
        table="calls_callevent", column="payload", before=BEFORE, after=AFTER
    )
    assert restored == "l"
