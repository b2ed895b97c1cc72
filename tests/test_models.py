"""calls/models.py: what a stored event's payload and a call's call object read."""

from __future__ import annotations

import pytest
from django.utils import timezone

from calls.models import Call, CallEvent, EventSource
from calls.payloads import parse_webhook
from calls.reconcile import call_snapshot_reconcile
from calls.services import call_event_record
from calls.socket_services import call_socket_session_record
from tests import retell
from tests.factories import CallEventFactory, CallFactory

pytestmark = pytest.mark.django_db


def stored(body: bytes) -> CallEvent:
    """Record ``body`` as a webhook delivery; its event as read back from the database."""
    outcome = call_event_record(
        event=parse_webhook(body), raw_body=body, source_ip="100.20.5.228", key_fingerprint="k"
    )
    return CallEvent.objects.get(pk=outcome.event.pk)


def test_a_webhooks_payload_is_the_call_object_in_its_body():
    event = stored(retell.fixture_bytes("call_ended"))
    assert event.payload_key == "call"
    assert event.payload == retell.fixture_json("call_ended")["call"]


def test_a_legacy_webhooks_payload_is_the_object_under_data():
    event = stored(retell.fixture_bytes("legacy_data_call_ended"))
    assert event.payload_key == "data"
    assert event.payload == retell.fixture_json("legacy_data_call_ended")["data"]


def test_a_socket_sessions_payload_is_its_whole_summary():
    summary = {"session_id": "s1", "close_code": 1000, "turns": [{"said": "Grüße"}]}
    call_socket_session_record(call_id="call_s", summary=summary, fields={}, seen_at=timezone.now())
    event = CallEvent.objects.get()
    assert (event.source, event.payload_key) == (EventSource.LLM_SOCKET, "")
    assert event.payload == summary


def test_a_retell_api_snapshots_payload_is_the_listed_call():
    call = retell.fixture_json("call_analyzed")["call"] | {"call_id": "call_snap"}
    call_snapshot_reconcile(call=call, key_fingerprint="fp", dry_run=False)
    event = CallEvent.objects.get()
    assert (event.source, event.payload_key) == (EventSource.RETELL_API, "call")
    assert event.payload == call
    assert Call.objects.get().call_object == call


def test_the_payload_follows_the_raw_body():
    event = CallEventFactory.create(payload={"call_id": "a"})
    assert event.payload == {"call_id": "a"}
    event.raw_body = '{"event":"call_ended","call":{"call_id":"b"}}'
    assert event.payload == {"call_id": "b"}
    event.refresh_from_db()
    assert event.payload == {"call_id": "a"}


def test_the_payload_is_read_only():
    with pytest.raises(AttributeError):
        CallEvent(payload={"call_id": "a"})  # type: ignore[misc]


def test_a_call_object_is_its_events_payload_or_none():
    call = CallFactory.create()
    assert call.call_object is None
    event = CallEventFactory.create(call=call, payload={"call_id": call.call_id, "n": 1})
    call.call_object_event = event
    call.save()
    assert Call.objects.get(pk=call.pk).call_object == {"call_id": call.call_id, "n": 1}


def test_deleting_the_event_leaves_the_call_without_a_call_object():
    event = CallEventFactory.create()
    Call.objects.filter(pk=event.call_id).update(call_object_event=event)
    event.delete()
    assert Call.objects.get().call_object is None
