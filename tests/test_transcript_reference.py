"""The call's structured transcript: a reference to the event that carried it, or held
inline when no event did (the call socket's live transcript). Either way it reads the same,
and the merge still picks it by version, whatever the order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection

from calls.llm.records import prior_utterances
from calls.models import Call, CallEvent
from calls.payloads import parse_webhook, parse_webhook_for_merge
from calls.reconcile import call_snapshot_reconcile
from calls.replay import call_events_replay
from calls.selectors import call_transcript_get, live_calls_by_pk, transcript_turns
from calls.services import call_event_record
from calls.socket_services import call_socket_observe
from tests import retell

pytestmark = pytest.mark.django_db

CALL_ID = "call_transcript_ref_1"
SEEN = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def body(name: str, **changes: Any) -> bytes:
    document = retell.with_call_id(retell.fixture_json(name), CALL_ID)
    document["call"].update(changes)
    return retell.compact(document)


def deliver(raw_body: bytes) -> CallEvent:
    outcome = call_event_record(
        event=parse_webhook(raw_body), raw_body=raw_body, source_ip=None, key_fingerprint="k"
    )
    return outcome.event


def sent(raw_body: bytes, name: str) -> Any:
    return parse_webhook(raw_body).call[name]


def stored_call() -> Call:
    return Call.objects.get(call_id=CALL_ID)


def observe_live(turns: list[dict[str, str]]) -> None:
    call_socket_observe(call_id=CALL_ID, fields={"transcript_object": turns}, seen_at=SEEN)


LIVE = [{"role": "agent", "content": f"Turn {n}"} for n in range(9)]


def test_a_webhook_transcript_is_referred_to_not_copied_into_the_call():
    ended = body("call_ended")
    event = deliver(ended)
    call = stored_call()
    assert call.transcript_event_id == event.pk
    assert (call.transcript_object, call.transcript_with_tool_calls) == (None, None)
    assert call.transcript_document("transcript_object") == sent(ended, "transcript_object")
    assert call.transcript_document("transcript_with_tool_calls") == sent(
        ended, "transcript_with_tool_calls"
    )
    assert call.transcript  # the plain text stays a column: the API searches it


def test_the_call_row_write_carries_no_word_timings():
    deliver(body("call_started"))
    call_writes: list[Any] = []

    def record_call_writes(execute, sql, params, many, context):
        if sql.startswith('UPDATE "calls_call"'):
            call_writes.extend(params if many else [params])
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record_call_writes):
        deliver(body("call_ended"))
    values = [value for row in call_writes for value in row]
    assert "call_ended" in values  # the call was written...
    assert not any('"words"' in value for value in values if isinstance(value, str))


def test_the_most_advanced_transcript_wins_in_either_order():
    ended, analyzed = body("call_ended"), body("call_analyzed")
    analyzed_event = deliver(analyzed)
    deliver(ended)  # late: ranks below call_analyzed
    assert stored_call().transcript_event_id == analyzed_event.pk


def test_a_delivery_without_a_transcript_leaves_it_alone():
    event = deliver(body("call_ended"))
    deliver(body("call_started"))
    assert stored_call().transcript_event_id == event.pk


def test_the_webhooks_final_transcript_replaces_the_live_one_held_inline():
    observe_live(LIVE[:2])
    call = stored_call()
    assert (call.transcript_event_id, call.transcript_object) == (None, LIVE[:2])
    ended = body("call_ended")
    event = deliver(ended)
    call = stored_call()
    assert (call.transcript_event_id, call.transcript_object) == (event.pk, None)
    observe_live(LIVE)  # a late socket write ranks below call_ended: nothing changes
    call = stored_call()
    assert (call.transcript_event_id, call.transcript_object) == (event.pk, None)
    assert call.transcript_document("transcript_object") == sent(ended, "transcript_object")


def test_a_longer_live_transcript_replaces_a_shorter_transcript_updated():
    deliver(body("transcript_updated"))  # 3 turns, ranked as live as the socket
    observe_live(LIVE)
    call = stored_call()
    assert call.transcript_event_id is None
    assert call.transcript_document("transcript_object") == LIVE
    assert call.transcript_document("transcript_with_tool_calls") is None


def test_readers_see_the_referred_transcript_in_one_query(django_assert_num_queries):
    ended = body("call_ended")
    deliver(ended)
    turns = [
        {"role": entry["role"], "content": entry["content"]}
        for entry in sent(ended, "transcript_object")
    ]
    with django_assert_num_queries(1):
        assert transcript_turns(call=call_transcript_get(call_id=CALL_ID)) == turns
    pk = stored_call().pk
    with django_assert_num_queries(1):
        (live,) = live_calls_by_pk(pks=[pk])
        assert transcript_turns(call=live) == turns
    assert prior_utterances(call_id=CALL_ID) == len(turns)


def test_transcript_document_names_only_the_two_documents():
    with pytest.raises(ValueError, match="not a transcript document"):
        Call(call_id="x").transcript_document("transcript")


def test_replaying_the_same_events_reports_no_change():
    events = [deliver(body(name)) for name in ("call_started", "call_analyzed", "call_ended")]
    result = call_events_replay(event_ids=[event.pk for event in events], dry_run=False)
    assert result.changes == []


def test_an_api_snapshot_with_the_same_transcript_is_no_gap():
    deliver(body("call_ended"))
    snapshot = retell.with_call_id(retell.fixture_json("call_ended"), CALL_ID)["call"]
    # The snapshot outranks call_ended, so the call now refers to the snapshot's event,
    # whose transcript is the same: nothing the call says changed.
    assert call_snapshot_reconcile(call=snapshot, key_fingerprint="k", dry_run=False) is None
    call = stored_call()
    assert call.transcript_event is not None
    assert call.transcript_event.source == "retell_api"


def test_the_merged_call_refers_to_its_events_by_key_not_by_object():
    # The new event refers to its call; the call holding the event object too would be a
    # reference cycle, keeping each delivery's parsed body alive until a garbage collection.
    ended = body("call_ended")
    outcome = call_event_record(
        event=parse_webhook(ended), raw_body=ended, source_ip=None, key_fingerprint="k"
    )
    call = outcome.call
    assert call.call_object_event_id == call.transcript_event_id == outcome.event.pk
    assert not Call._meta.get_field("call_object_event").is_cached(call)
    assert not Call._meta.get_field("transcript_event").is_cached(call)
    assert stored_call().call_object_event_id == outcome.event.pk


def test_a_delivery_parsed_for_the_merge_is_stored_and_read_back_whole():
    ended = body("call_ended")
    outcome = call_event_record(
        event=parse_webhook_for_merge(ended), raw_body=ended, source_ip=None, key_fingerprint="k"
    )
    # The merge's partial view is not kept as the event's payload: read from the body.
    assert outcome.event.payload == parse_webhook(ended).call
    call = stored_call()
    assert call.transcript_event_id == outcome.event.pk
    assert call.transcript_document("transcript_object") == sent(ended, "transcript_object")
    assert call.transcript == sent(ended, "transcript")
