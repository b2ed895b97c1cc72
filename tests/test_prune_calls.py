from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from calls import retention
from calls.models import Call, CallEvent
from notifications.models import Delivery, DeliveryState, Destination, DestinationKind, Recording
from tests import retell
from tests.outbox import FORWARD_SECRET, Receiver, tasks_run_ready

pytestmark = pytest.mark.django_db

OLD = ["call_old_1", "call_old_2"]
RECENT = "call_recent_1"


@pytest.fixture(autouse=True)
def _outbox_settings(settings: Any, tmp_path: Any) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    settings.FORWARD_URLS = []
    settings.RECORDINGS_CAPTURE = False
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def crm(httpserver) -> Receiver:
    """A forwarding destination; request it before ``calls`` so their events have deliveries."""
    receiver = Receiver(httpserver, "/crm")
    Destination.objects.create(
        name="crm", kind=DestinationKind.FORWARD, url=receiver.url, signing_secret=FORWARD_SECRET
    )
    return receiver


@pytest.fixture
def calls(signed_post) -> None:
    """Two calls 40 days old and one 5 days old, each with three stored events."""
    for call_id in [*OLD, RECENT]:
        for name in ("call_started", "call_ended", "call_analyzed"):
            signed_post(retell.compact(retell.with_call_id(retell.fixture_json(name), call_id)))
    now = timezone.now()
    Call.objects.filter(call_id__in=OLD).update(started_at=now - timedelta(days=40))
    Call.objects.filter(call_id=RECENT).update(started_at=now - timedelta(days=5))


def prune(*args: str) -> str:
    out = io.StringIO()
    call_command("prune_calls", *args, stdout=out)
    return out.getvalue()


def test_a_dry_run_prune_says_what_it_would_delete_and_deletes_nothing(calls):
    output = prune("--days", "30", "--dry-run")
    assert output.startswith("Would delete 2 call(s) from before ")
    assert output.endswith("(6 events, 0 deliveries, 0 recordings).\n")
    assert Call.objects.count() == 3
    assert CallEvent.objects.count() == 9


def test_prune_deletes_old_calls_with_their_events_and_deliveries(crm, calls):
    output = prune("--days", "30")
    assert output.startswith("Deleted 2 call(s)")
    assert output.endswith("(6 events, 6 deliveries, 0 recordings).\n")
    assert list(Call.objects.values_list("call_id", flat=True)) == [RECENT]
    assert CallEvent.objects.count() == 3
    assert set(Delivery.objects.values_list("call__call_id", flat=True)) == {RECENT}
    assert prune("--days", "30").startswith("Deleted 0 call(s)")  # cron runs it again


def test_a_call_that_never_started_ages_from_when_it_was_stored(signed_post):
    signed_post(retell.fixture_bytes("failed_dial_call_ended"))
    Call.objects.update(started_at=None)
    assert prune("--days", "30").startswith("Deleted 0 call(s)")
    Call.objects.update(created_at=timezone.now() - timedelta(days=31))
    assert prune("--days", "30").startswith("Deleted 1 call(s)")


def test_a_dry_run_scrub_changes_nothing(calls):
    output = prune("--days", "30", "--scrub", "transcript,numbers", "--dry-run")
    assert output.startswith("Would scrub transcript, numbers on 2 call(s)")
    assert Call.objects.filter(call_id__in=OLD, transcript="").count() == 0
    assert all(event.raw_body for event in CallEvent.objects.all())


def test_scrub_blanks_the_fields_on_the_call_its_events_and_its_deliveries(crm, calls):
    tasks_run_ready()

    output = prune("--days", "30", "--scrub", "transcript,numbers,analysis,recording")
    assert output.startswith("Scrubbed transcript, numbers, analysis, recording on 2 call(s)")

    for call in Call.objects.filter(call_id__in=OLD):
        assert (call.transcript, call.transcript_object, call.transcript_with_tool_calls) == (
            "",
            None,
            None,
        )
        assert (call.from_number, call.to_number, call.recording_url) == ("", "", "")
        assert (call.call_summary, call.custom_analysis_data) == ("", None)
        assert call.user_sentiment == "Positive"  # not asked for: kept
        assert_scrubbed(call.call_object)
        for event in call.events.all():
            # The body is rewritten without the data, in its envelope; the hash is still the
            # delivered bytes', so a re-delivery of them counts as a duplicate.
            body = json.loads(event.raw_body)
            assert set(body) == {"event", "call"}
            assert body["event"] == event.event
            assert_scrubbed(body["call"])
            assert event.payload == body["call"]
            assert "move my cleaning" not in event.raw_body  # the transcript's words
            assert "+1415" not in event.raw_body
            assert hashlib.sha256(event.raw_body.encode()).hexdigest() != event.body_sha256
    old_bodies = Delivery.objects.filter(call__call_id__in=OLD, state=DeliveryState.SUCCEEDED)
    assert set(old_bodies.values_list("body", flat=True)) == {""}

    recent = Call.objects.get(call_id=RECENT)
    assert recent.transcript
    assert recent.from_number
    assert recent.call_summary
    assert all(event.raw_body for event in recent.events.all())
    assert all(delivery.body for delivery in recent.deliveries.all())
    again = prune("--days", "30", "--scrub", "transcript,numbers,analysis,recording")
    assert again.startswith("Scrubbed transcript, numbers, analysis, recording on 0 call(s)")


def test_a_scrubbed_delivery_sent_again_is_still_a_duplicate(calls, signed_post):
    prune("--days", "30", "--scrub", "transcript")
    body = retell.compact(retell.with_call_id(retell.fixture_json("call_analyzed"), OLD[0]))
    assert signed_post(body).status_code == 200
    event = CallEvent.objects.get(call__call_id=OLD[0], event="call_analyzed")
    assert event.delivery_count == 2
    assert "move my cleaning" not in event.raw_body
    assert Call.objects.get(call_id=OLD[0]).transcript == ""


def test_scrubbing_a_legacy_delivery_keeps_its_data_key(signed_post):
    document = retell.fixture_json("call_ended")
    signed_post(retell.compact({"event": "call_ended", "data": document["call"]}))
    Call.objects.update(started_at=timezone.now() - timedelta(days=31))
    prune("--days", "30", "--scrub", "numbers")
    event = CallEvent.objects.get()
    assert set(json.loads(event.raw_body)) == {"event", "data"}
    assert event.payload_key == "data"
    assert not {"from_number", "to_number"} & set(event.payload)
    assert event.payload["call_id"] == document["call"]["call_id"]


def test_a_scrubbed_body_is_compact_utf8_json_in_its_envelope():
    specs = [retention.SCRUB_SPECS["transcript"]]
    webhook = CallEvent(
        event="call_ended",
        payload_key="call",
        raw_body='{"event": "call_ended", "call": {"call_id": "c", "agent_name": "Zoë", '
        '"transcript": "Hi"}, "extra": 1}',
    )
    assert retention._scrubbed_body(webhook, specs) == (
        '{"event":"call_ended","call":{"call_id":"c","agent_name":"Zoë"},"extra":1}'
    )
    session = CallEvent(payload_key="", raw_body='{"session_id":"s","live_transcript":"Hi"}')
    assert retention._scrubbed_body(session, specs) == '{"session_id":"s"}'


def assert_scrubbed(document: Any) -> None:
    removed = {"transcript", "transcript_object", "transcript_with_tool_calls", "recording_url"}
    assert not removed & set(document)
    assert not {"from_number", "to_number"} & set(document)
    analysis = document.get("call_analysis", {})
    assert not {"call_summary", "custom_analysis_data"} & set(analysis)
    assert document["call_id"]  # everything else stays


@pytest.fixture
def recording_path(signed_post, httpserver, settings) -> Path:
    """A 31-day-old call whose recording was captured; the file's path."""
    settings.RECORDINGS_CAPTURE = True
    httpserver.expect_request("/rec/a.wav").respond_with_data(b"RIFF-audio")
    document = retell.fixture_json("call_ended")
    document["call"]["recording_url"] = httpserver.url_for("/rec/a.wav")
    signed_post(retell.compact(document))
    tasks_run_ready()
    Call.objects.update(started_at=timezone.now() - timedelta(days=31))
    path = settings.MEDIA_ROOT / Recording.objects.get().file.name
    assert path.exists()
    return path


def test_scrubbing_recordings_deletes_the_captured_files(
    recording_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        prune("--days", "30", "--scrub", "recording")
    assert not Recording.objects.exists()
    assert not recording_path.exists()
    assert Call.objects.get().recording_url == ""


def test_pruning_a_call_removes_its_recording_file(
    recording_path, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert prune("--days", "30").endswith("(1 events, 1 deliveries, 1 recordings).\n")
    assert not Recording.objects.exists()
    assert not recording_path.exists()


@pytest.mark.parametrize(
    "args",
    [["--days", "0"], ["--days", "30", "--scrub", "voice"], ["--days", "30", "--scrub", ""]],
)
def test_it_rejects_bad_arguments(args):
    with pytest.raises(CommandError):
        prune(*args)
