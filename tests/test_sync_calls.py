from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from calls.management.commands.sync_calls import ProgressBar
from calls.models import Call, CallEvent, EventSource
from calls.payloads import parse_webhook
from calls.reconcile import API_SNAPSHOT_EVENT, snapshot_body
from calls.services import call_event_record
from tests import retell
from tests.fakes.retell_api import FakeRetellAPI, fake_retell_api
from tests.test_scaleout import merged_columns

pytestmark = pytest.mark.django_db

SINCE = "2026-01-01"
SINCE_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


def api_call(call_id: str, *, minute: int = 0, **changes: Any) -> dict[str, Any]:
    """A finished, analysed call as Retell's API lists it (the call_analyzed fixture)."""
    call = retell.fixture_json("call_analyzed")["call"]
    call.update(call_id=call_id, start_timestamp=SINCE_MS + minute * 60_000, **changes)
    return call


def deliver(event: str, call_id: str) -> None:
    """Store a webhook delivery of the fixture ``event`` for ``call_id``."""
    body = retell.compact(retell.with_call_id(retell.fixture_json(event), call_id))
    call_event_record(
        event=parse_webhook(body), raw_body=body, source_ip="100.20.5.228", key_fingerprint="fp"
    )


@pytest.fixture
def retell_api(settings) -> Iterator[FakeRetellAPI]:
    with fake_retell_api(api_key=settings.RETELL_API_KEY, calls=[]) as api:
        settings.RETELL_BASE_URL = api.url
        yield api


def sync(*args: str) -> str:
    out = io.StringIO()
    call_command("sync_calls", "--since", SINCE, "--retries", "0", *args, stdout=out)
    return out.getvalue()


# --- Healing ----------------------------------------------------------------------------


def test_it_creates_calls_whose_webhooks_never_arrived(retell_api):
    retell_api.calls = [api_call("call_lost")]
    output = sync()
    call = Call.objects.get(call_id="call_lost")
    assert call.status == "ended"
    assert call.user_sentiment == "Positive"
    assert call.call_successful is True
    event = call.events.get()
    assert (event.source, event.event) == (EventSource.RETELL_API, API_SNAPSHOT_EVENT)
    assert "missing call_lost" in output
    assert "1 calls listed: 1 healed" in output


def test_it_fills_what_missed_webhooks_left_out(retell_api):
    deliver("call_started", "call_half")
    retell_api.calls = [api_call("call_half")]
    output = sync()
    call = Call.objects.get(call_id="call_half")
    assert call.status == "ended"
    assert call.call_summary.startswith("José")
    assert "stale call_half: " in output
    assert "call_summary" in output


def test_it_leaves_calls_the_webhooks_completed_alone(retell_api):
    deliver("call_analyzed", "call_done")
    retell_api.calls = [api_call("call_done", call_analysis={"call_summary": "Other words."})]
    output = sync()
    # call_analyzed outranks an API snapshot: the webhook's analysis stays.
    assert Call.objects.get(call_id="call_done").call_summary.startswith("José")
    assert "0 healed, 1 already in step" in output


def test_it_adds_nothing_when_run_again(retell_api):
    retell_api.calls = [api_call("call_a"), api_call("call_b", minute=1)]
    sync()
    output = sync()
    assert CallEvent.objects.count() == 2
    assert set(CallEvent.objects.values_list("delivery_count", flat=True)) == {2}
    assert "2 calls listed: 0 healed, 2 already in step" in output


def test_it_skips_calls_still_in_progress(retell_api):
    retell_api.calls = [api_call("call_live", call_status="ongoing")]
    output = sync()
    assert not Call.objects.exists()
    assert "1 still in progress" in output


def test_a_dry_run_reports_the_gaps_and_writes_nothing(retell_api):
    deliver("call_started", "call_half")
    retell_api.calls = [api_call("call_lost"), api_call("call_half", minute=1)]
    output = sync("--dry-run")
    assert "missing call_lost" in output
    assert "stale call_half" in output
    assert "2 would heal" in output
    assert list(Call.objects.values_list("call_id", flat=True)) == ["call_half"]
    assert Call.objects.get().status == "ongoing"
    assert CallEvent.objects.count() == 1


# --- Talking to the API -----------------------------------------------------------------


def test_it_walks_every_page_with_the_cursor(retell_api):
    retell_api.calls = [api_call(f"call_{n}", minute=n) for n in range(5)]
    sync("--page-size", "2")
    assert Call.objects.count() == 5
    keys = [request.get("pagination_key") for request in retell_api.requests]
    assert keys == [None, "p2", "p4"]


def test_it_asks_for_calls_since_the_date_oldest_first(retell_api):
    retell_api.calls = [api_call("call_old", minute=-1), api_call("call_new", minute=1)]
    sync()
    request = retell_api.requests[0]
    assert request["filter_criteria"] == {
        "start_timestamp": {"op": "ge", "type": "number", "value": SINCE_MS}
    }
    assert request["sort_order"] == "ascending"
    assert list(Call.objects.values_list("call_id", flat=True)) == ["call_new"]


def test_it_accepts_a_date_time_with_an_offset(retell_api):
    out = io.StringIO()
    call_command("sync_calls", "--since", "2026-01-01T02:00:00+02:00", stdout=out)
    assert retell_api.requests[0]["filter_criteria"]["start_timestamp"]["value"] == SINCE_MS


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2026-02-30T10:00", ""])
def test_it_refuses_a_bad_date(value):
    with pytest.raises(CommandError, match="since"):
        call_command("sync_calls", "--since", value)


def test_it_refuses_a_bad_page_size():
    with pytest.raises(CommandError, match="page-size"):
        call_command("sync_calls", "--since", SINCE, "--page-size", "0")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("error", "Retell's API failed"),
        ("not_json", "not JSON"),
        ("no_items", "without an 'items' list"),
        ("bad_items", "not call objects"),
        ("no_key", "no pagination_key"),
        ("same_key", "repeated a pagination_key"),
    ],
)
def test_it_stops_with_a_clear_error_on_a_bad_answer(retell_api, fault, message):
    retell_api.calls = [api_call(f"call_{n}", minute=n) for n in range(6)]
    retell_api.fault = fault
    with pytest.raises(CommandError, match=message):
        sync("--page-size", "2")


def test_it_keeps_what_it_merged_before_a_failure(retell_api):
    retell_api.calls = [api_call(f"call_{n}", minute=n) for n in range(6)]
    retell_api.fault = "same_key"  # p0 then p1 (call_0..call_2) merge; p1 again stops it
    with pytest.raises(CommandError):
        sync("--page-size", "2")
    assert Call.objects.count() == 3


def test_it_refuses_a_call_without_an_id(retell_api):
    retell_api.calls = [api_call("")]
    with pytest.raises(CommandError, match="call_id"):
        sync()


def test_it_reports_a_rejected_api_key(retell_api, settings):
    settings.RETELL_API_KEY = "key_wrong_for_the_fake_api"
    with pytest.raises(CommandError, match="401"):
        sync()


# --- Merge order and progress -----------------------------------------------------------


def test_an_api_snapshot_merges_order_free_with_the_webhooks():
    steps = ["call_started", "call_ended", "call_analyzed", API_SNAPSHOT_EVENT]
    results = []
    for number, order in enumerate(itertools.permutations(steps)):
        call_id = f"call_perm_{number}"
        for step in order:
            if step == API_SNAPSHOT_EVENT:
                body = snapshot_body(api_call(call_id))
                call_event_record(
                    event=parse_webhook(body), raw_body=body, source_ip=None, key_fingerprint=""
                )
            else:
                deliver(step, call_id)
        results.append(merged_columns(Call.objects.get(call_id=call_id)))
    assert all(result == results[0] for result in results)
    assert results[0]["last_event"] == "call_analyzed"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_it_draws_a_progress_bar_on_a_terminal(retell_api, monkeypatch):
    retell_api.calls = [api_call(f"call_{n}", minute=n) for n in range(4)]
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    sync("--page-size", "2")
    assert "[###############---------------] 2/4 calls" in terminal.getvalue()
    assert terminal.getvalue().endswith("4/4 calls\n")


def test_it_draws_no_progress_when_stderr_is_not_a_terminal(retell_api, monkeypatch):
    retell_api.calls = [api_call("call_a")]
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    sync()
    assert stream.getvalue() == ""


def test_the_progress_bar_counts_without_a_total():
    stream = io.StringIO()
    ProgressBar(stream)(7, None)
    assert stream.getvalue() == "\r7 calls listed"
