"""calls/migrations/0009: the call's structured transcript becomes a reference, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps.registry import Apps

from tests.schema_history import delivery_body, migrate, schema_at, sha256_hex

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("calls", "0008_json_as_text")
AFTER = ("calls", "0009_call_transcript_event")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

TURNS = [
    {"role": "agent", "content": "Hi, Zoë here.", "words": [{"word": "Hi", "start": 0.1}]},
    {"role": "user", "content": "Bonjour, c'est José.", "words": []},
]
TOOLS = [*TURNS, {"role": "tool_call_invocation", "name": "end_call", "arguments": "{}"}]
ENDED = {"call_id": "call_a", "transcript_object": TURNS, "transcript_with_tool_calls": TOOLS}
LIVE = [{"role": "agent", "content": "Hi, Zoë here."}]


@pytest.fixture
def old_schema() -> Iterator[Apps]:
    with schema_at(BEFORE) as apps:
        yield apps


@pytest.fixture
def stored(old_schema: Apps) -> dict[str, int | None]:
    """Calls as 0008 stored them; the event each should refer to afterwards (None: none)."""
    Call = old_schema.get_model("calls", "Call")
    CallEvent = old_schema.get_model("calls", "CallEvent")

    def add(call_id: str, held: dict[str, Any], winner: str, events: dict[str, dict]) -> dict:
        call = Call.objects.create(
            call_id=call_id, field_versions={"transcript_object": [40, 2, winner]}, **held
        )
        ids = {}
        for name, document in events.items():
            raw_body = delivery_body(name, {**document, "call_id": call_id})
            ids[sha256_hex(raw_body)] = CallEvent.objects.create(
                call=call,
                event=name,
                payload_key="call",
                raw_body=raw_body,
                body_sha256=sha256_hex(raw_body),
                first_received_at=NOW,
                last_received_at=NOW,
            ).pk
        return ids

    held = {"transcript_object": TURNS, "transcript_with_tool_calls": TOOLS}
    ended = sha256_hex(delivery_body("call_ended", {**ENDED, "call_id": "call_a"}))
    a = add("call_a", held, ended, {"call_started": {}, "call_ended": ENDED})
    # Its winning event holds other words than the call (a hand edit, a partial restore):
    # converting would change what the call says, so it keeps its own.
    other = {**ENDED, "transcript_object": TURNS[:1]}
    b_sha = sha256_hex(delivery_body("call_ended", {**other, "call_id": "call_b"}))
    add("call_b", held, b_sha, {"call_ended": other})
    add("call_c", held, "f" * 64, {})  # its event is gone
    add("call_d", {"transcript_object": LIVE}, "e" * 64, {})  # the socket's live transcript
    return {"call_a": a[ended], "call_b": None, "call_c": None, "call_d": None}


def transcripts(apps: Apps) -> dict[str, tuple[Any, Any]]:
    Call = apps.get_model("calls", "Call")
    rows = Call.objects.values_list("call_id", "transcript_object", "transcript_with_tool_calls")
    return {call_id: (held, tools) for call_id, held, tools in rows}


def test_forwards_refers_to_the_event_only_where_it_holds_the_same_transcript(stored):
    apps = migrate(AFTER)
    Call = apps.get_model("calls", "Call")
    assert dict(Call.objects.values_list("call_id", "transcript_event")) == stored
    assert transcripts(apps) == {
        "call_a": (None, None),  # read from the event now
        "call_b": (TURNS, TOOLS),
        "call_c": (TURNS, TOOLS),
        "call_d": (LIVE, None),
    }


def test_every_call_reads_the_same_transcript_after_the_migration(stored):
    migrate(AFTER)
    from calls.models import Call  # the current model: transcript_document

    read = {
        call.call_id: (
            call.transcript_document("transcript_object"),
            call.transcript_document("transcript_with_tool_calls"),
        )
        for call in Call.objects.all()
    }
    assert read == {
        "call_a": (TURNS, TOOLS),
        "call_b": (TURNS, TOOLS),
        "call_c": (TURNS, TOOLS),
        "call_d": (LIVE, None),
    }


def test_backwards_copies_the_transcripts_back_from_their_events(stored):
    before = transcripts(migrate(BEFORE))
    migrate(AFTER)
    assert transcripts(migrate(BEFORE)) == before
    apps = migrate(AFTER)  # and forwards again: the same references
    Call = apps.get_model("calls", "Call")
    assert dict(Call.objects.values_list("call_id", "transcript_event")) == stored
