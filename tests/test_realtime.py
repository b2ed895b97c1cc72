"""calls/realtime.py: group names, payloads, the commit hook and the per-call throttle."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from django.db import connection
from django.test.utils import CaptureQueriesContext

from calls import realtime
from calls.llm import records
from calls.models import Call
from calls.payloads import parse_webhook
from calls.realtime import Broadcast, Sender, call_group, call_state
from calls.services import IncomingDelivery, call_events_record
from tests.factories import CallFactory
from tests.live import conversation, webhook_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def listening(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if a live monitor could be watching (a sending loop exists)."""
    monkeypatch.setattr(realtime, "_publishing_loop", lambda: asyncio.new_event_loop)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch, listening: None) -> list[Broadcast]:
    """What reaches the sending loop (instead of reaching it)."""
    sent: list[Broadcast] = []
    monkeypatch.setattr(realtime, "publish", sent.append)
    return sent


def test_a_call_deleted_before_its_broadcast_is_skipped_quietly(
    signed_post, published, django_capture_on_commit_callbacks, caplog
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert signed_post(webhook_body("call_started", "call_rt_pruned")).status_code == 200
    Call.objects.filter(call_id="call_rt_pruned").delete()
    with caplog.at_level(logging.WARNING, logger="calls.realtime"):
        for callback in callbacks:
            callback()
    assert published == []
    assert "not queued" not in caplog.text


def test_with_nobody_to_tell_no_state_is_built(
    monkeypatch, signed_post, django_capture_on_commit_callbacks
):
    def unexpected(call: object) -> Broadcast:
        raise AssertionError("built a broadcast nobody can receive")

    monkeypatch.setattr(realtime, "_broadcast_of", unexpected)
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_post(webhook_body("call_started", "call_rt_nobody")).status_code == 200


@pytest.mark.parametrize(
    "call_id", ["call_2f7c1e9a4b3d4e0f8a6b", "x" * 128, "call with spaces/and:colons", "é"]
)
def test_every_call_id_gets_a_valid_group_name(call_id):
    assert InMemoryChannelLayer().require_valid_group_name(call_group(call_id))


def test_group_names_of_different_ids_differ():
    assert call_group("a b") != call_group("a_b") != call_group("a.b")
    assert call_group("x" * 128) != call_group("x" * 127)


def test_the_list_gets_the_end_of_the_transcript_and_where_it_starts():
    call = CallFactory.create(transcript_object=conversation(*(f"line {n}" for n in range(9))))
    state = call_state(call, last_turns=realtime.LIST_TURNS)
    assert state["turn_count"] == 9
    assert state["first_turn"] == 3
    assert [turn["content"] for turn in state["turns"]] == [f"line {n}" for n in range(3, 9)]
    assert call_state(call)["turns"][0] == {"role": "agent", "content": "line 0"}


def test_the_state_links_to_the_calls_page_and_its_admin_page():
    call = CallFactory.create(call_id="call_links")
    state = call_state(call)
    assert state["url"] == "/live/call_links/"
    assert state["admin_url"] == f"/admin/calls/call/{call.pk}/change/"


def test_a_stored_webhook_is_broadcast_once_it_commits(
    signed_post, published, django_capture_on_commit_callbacks
):
    body = webhook_body("call_started", "call_rt_commit")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert signed_post(body).status_code == 200
    assert published == [], "nothing may leave before the commit"
    for callback in callbacks:
        callback()
    assert [b.call_id for b in published] == ["call_rt_commit"]
    assert published[0].summary["status"] == "ongoing"
    assert published[0].detail["agent"] == "Northwind Reception"


def test_a_batch_of_calls_is_read_back_in_one_query(published, django_capture_on_commit_callbacks):
    deliveries = [
        IncomingDelivery(
            event=parse_webhook(body), raw_body=body, source_ip=None, key_fingerprint="k"
        )
        for body in (webhook_body("call_started", f"call_rt_batch_{n}") for n in range(3))
    ]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_events_record(deliveries=deliveries)
    assert len(callbacks) == 1  # one hook for the whole batch
    with CaptureQueriesContext(connection) as queries:
        callbacks[0]()
    assert len(queries) == 1
    assert sorted(b.call_id for b in published) == [f"call_rt_batch_{n}" for n in range(3)]
    assert "transcript_with_tool_calls" not in queries[0]["sql"]  # only what is shown


def test_a_duplicate_delivery_broadcasts_nothing(
    signed_post, published, django_capture_on_commit_callbacks
):
    body = webhook_body("call_started", "call_rt_dup")
    with django_capture_on_commit_callbacks(execute=True):
        signed_post(body)
    with django_capture_on_commit_callbacks(execute=True):
        assert signed_post(body).status_code == 200
    assert len(published) == 1


def test_a_rolled_back_webhook_broadcasts_nothing(
    signed_post, published, django_capture_on_commit_callbacks, monkeypatch
):
    def fail(**kwargs: Any) -> None:
        raise RuntimeError("outbox down")

    monkeypatch.setattr("calls.services.outbox_enqueue_for_delivery", fail)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert signed_post(webhook_body("call_started", "call_rt_rollback")).status_code == 500
    assert callbacks == []
    assert published == []
    assert not Call.objects.filter(call_id="call_rt_rollback").exists()


def test_the_call_sockets_transcript_write_is_broadcast(
    published, django_capture_on_commit_callbacks
):
    transcript = conversation("Hello!", "Hi, I'd like to book.")
    with django_capture_on_commit_callbacks(execute=True):
        records.save_observation(
            call_id="call_rt_socket",
            fields=records.socket_fields(call=None, transcript=transcript),
        )
    assert len(published) == 1
    assert published[0].detail["turns"] == transcript
    assert published[0].detail["status"] == "ongoing"


def test_a_failure_to_queue_is_logged_and_swallowed(
    monkeypatch, caplog, django_capture_on_commit_callbacks, signed_post, listening
):
    def broken(broadcast: Broadcast) -> None:
        raise OSError("no loop")

    monkeypatch.setattr(realtime, "publish", broken)
    with caplog.at_level(logging.WARNING, logger="calls.realtime"):
        with django_capture_on_commit_callbacks(execute=True):
            assert signed_post(webhook_body("call_started", "call_rt_broken")).status_code == 200
    assert "not queued" in caplog.text


# --- the throttle -----------------------------------------------------------------------


def broadcast(version: int, call_id: str = "call_busy") -> Broadcast:
    state = {"call_id": call_id, "version": version}
    return Broadcast(call_id=call_id, version=version, summary=state, detail=state)


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """(time, version) of each send."""
    sent: list[tuple[float, int]] = []

    async def record(item: Broadcast) -> None:
        sent.append((time.monotonic(), item.version))

    monkeypatch.setattr(realtime, "_send", record)
    return sent


async def test_a_busy_call_is_sent_at_once_then_at_most_once_per_interval(settings, sends):
    settings.LIVE_BROADCAST_INTERVAL_MS = 200
    sender = Sender()
    start = time.monotonic()
    for version in range(1, 21):
        sender.submit(broadcast(version))
        await asyncio.sleep(0.02)  # 20 updates over ~0.4 s
    await asyncio.sleep(0.5)
    versions = [version for _, version in sends]
    assert versions[0] == 1, "the first update goes out at once"
    assert versions[-1] == 20, "the newest state always goes out in the end"
    assert len(versions) <= 4, versions
    gaps = [later - earlier for (earlier, _), (later, _) in zip(sends, sends[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    assert sends[0][0] - start < 0.1


async def test_each_call_has_its_own_throttle(settings, sends):
    settings.LIVE_BROADCAST_INTERVAL_MS = 1000
    sender = Sender()
    sender.submit(broadcast(1, "call_a"))
    sender.submit(broadcast(1, "call_b"))
    await asyncio.sleep(0.05)
    assert len(sends) == 2


async def test_an_older_state_never_replaces_a_newer_pending_one(settings, sends):
    settings.LIVE_BROADCAST_INTERVAL_MS = 100
    sender = Sender()
    sender.submit(broadcast(1))
    await asyncio.sleep(0.02)
    sender.submit(broadcast(5))
    sender.submit(broadcast(3))  # committed earlier, arrived later
    await asyncio.sleep(0.3)
    assert [version for _, version in sends] == [1, 5]


async def test_a_layer_that_fails_is_logged_and_the_next_update_still_goes(
    settings, monkeypatch, caplog
):
    settings.LIVE_BROADCAST_INTERVAL_MS = 10

    class Down:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            raise ConnectionError("redis down")

    monkeypatch.setattr(realtime, "get_channel_layer", Down)
    sender = Sender()
    with caplog.at_level(logging.WARNING, logger="calls.realtime"):
        sender.submit(broadcast(1))
        await asyncio.sleep(0.05)
        sender.submit(broadcast(2))
        await asyncio.sleep(0.05)
    assert caplog.text.count("not sent: ConnectionError") == 2


def test_without_a_live_socket_an_in_memory_layer_has_nobody_to_tell(settings, monkeypatch):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(realtime, "_server_loop", None)

    def no_thread() -> None:
        raise AssertionError("no sender thread is needed for a process-local layer")

    monkeypatch.setattr(realtime, "_background_loop", no_thread)
    realtime.publish(broadcast(1))
