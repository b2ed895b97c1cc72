"""What the call socket writes, and that the merged Call stays order-free with it in the mix."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections, transaction
from django.db.backends.signals import connection_created
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls import dbwork
from calls.llm import reads, records
from calls.llm.records import (
    Opening,
    opening_facts,
    prior_utterances,
    save_observation,
    save_session,
    save_transcript,
    socket_fields,
)
from calls.models import AgentProfile, Call, CallEvent
from calls.payloads import parse_webhook
from calls.services import call_event_record
from tests import retell
from tests.merged import merged_state

CALL_ID = "call_records_0001"
WEBHOOKS = ["call_started", "transcript_updated", "call_ended", "call_analyzed"]


def utterances(count: int) -> list[dict[str, Any]]:
    roles = itertools.cycle(["agent", "user"])
    return [{"role": next(roles), "content": f"line {n}"} for n in range(count)]


def webhook(name: str) -> Callable[[], None]:
    body = retell.compact(retell.with_call_id(retell.fixture_json(name), CALL_ID))

    def deliver() -> None:
        call_event_record(
            event=parse_webhook(body), raw_body=body, source_ip=None, key_fingerprint="k"
        )

    return deliver


def socket_observation(**kwargs: Any) -> Callable[[], None]:
    return lambda: save_observation(call_id=CALL_ID, fields=socket_fields(**kwargs))


DETAILS = {
    "call_id": CALL_ID,
    "agent_id": "agent_northwind_reception",
    "call_status": "registered",
    "from_number": "+14155550123",
    "retell_llm_dynamic_variables": {"customer_name": "José Núñez"},
}
DELIVERIES = [webhook(name) for name in WEBHOOKS] + [
    socket_observation(call=DETAILS, transcript=()),
    socket_observation(call=None, transcript=utterances(2)),
    socket_observation(call=None, transcript=utterances(4)),
]


def state_after(order: list[int]) -> dict[str, Any]:
    with transaction.atomic():
        for index in order:
            DELIVERIES[index]()
        state = merged_state(CALL_ID)
        transaction.set_rollback(True)
    return state


@pytest.mark.django_db
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(order=st.permutations(range(len(DELIVERIES))), repeats=st.lists(st.integers(0, 6)))
def test_webhooks_and_socket_observations_merge_the_same_in_any_order(order, repeats):
    reference = state_after(list(range(len(DELIVERIES))))
    assert state_after([*order, *repeats]) == reference


@pytest.mark.django_db
def test_the_webhooks_final_data_wins_over_the_live_transcript():
    state = state_after(list(range(len(DELIVERIES))))
    ended = retell.fixture_json("call_analyzed")["call"]
    assert state["transcript_object"] == ended["transcript_object"]
    assert state["status"] == "ended"
    assert state["last_event"] == "call_analyzed"


@pytest.mark.django_db
def test_a_longer_live_transcript_beats_a_shorter_transcript_update():
    webhook("transcript_updated")()  # three utterances
    socket_observation(call=None, transcript=utterances(4))()
    call = Call.objects.get(call_id=CALL_ID)
    assert [u["content"] for u in call.transcript_object or []] == [f"line {n}" for n in range(4)]
    assert call.last_event == "transcript_updated", "the socket never replaces the call object"


@pytest.mark.django_db
def test_the_socket_creates_the_call_when_no_webhook_came_first():
    socket_observation(call=DETAILS, transcript=utterances(2))()
    call = Call.objects.get(call_id=CALL_ID)
    assert call.agent_id == "agent_northwind_reception"
    assert call.status == "ongoing"
    assert call.transcript == "Agent: line 0\nUser: line 1\n"
    assert call.dynamic_variables == {"customer_name": "José Núñez"}
    assert call.call_object is None
    assert prior_utterances(call_id=CALL_ID) == 2


@pytest.mark.django_db
def test_a_session_is_stored_as_a_socket_event_with_its_summary():
    summary = {"session_id": "s1", "answers": 3, "turns": [{"response_id": 1}]}
    save_session(call_id=CALL_ID, summary=summary, fields=socket_fields(call=None, transcript=[]))
    save_session(call_id=CALL_ID, summary={**summary, "session_id": "s2"}, fields={})
    events = CallEvent.objects.filter(call__call_id=CALL_ID)
    assert [(e.event, e.source, e.payload["session_id"]) for e in events] == [
        ("llm_session", "llm_socket", "s1"),
        ("llm_session", "llm_socket", "s2"),
    ]


def test_prior_utterances_is_zero_for_an_unknown_call(db):
    assert prior_utterances(call_id="call_never_seen") == 0


def test_the_opening_reads_say_whether_it_is_a_reconnect_and_agents_have_profiles(db):
    assert opening_facts(call_id=CALL_ID) == Opening(reconnect=False, agent_profiles=False)
    socket_observation(call=DETAILS, transcript=utterances(2))()
    AgentProfile.objects.create(agent_id="agent_northwind_reception", name="Northwind")
    assert opening_facts(call_id=CALL_ID) == Opening(reconnect=True, agent_profiles=True)


# --- on the database threads ---------------------------------------------------------------


@pytest.fixture
def own_threads(settings: Any) -> Iterator[None]:
    """Jobs on the real database and read threads, each started afresh and shut down."""
    settings.DB_WORKER_THREADS = 1
    yield
    dbwork.db_threads.reset()
    reads.read_threads.reset()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("own_threads")
async def test_socket_writes_run_on_the_database_threads_and_are_awaited():
    written_on: list[str] = []

    def spy(**kwargs: Any) -> None:
        written_on.append(threading.current_thread().name)
        save_transcript(**kwargs)

    await records._on_db_thread(spy, call_id=CALL_ID, transcript=utterances(3))
    assert written_on[0].startswith("retellhub-db")
    call = await Call.objects.aget(call_id=CALL_ID)
    assert call.transcript == "Agent: line 0\nUser: line 1\nAgent: line 2\n"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("own_threads")
async def test_a_failed_write_raises_in_the_awaiting_task():
    def broken(**_: Any) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        await records._on_db_thread(broken)
    await records.asave_transcript(call_id=CALL_ID, transcript=utterances(1))
    assert await Call.objects.filter(call_id=CALL_ID).aexists(), "the thread is still usable"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("own_threads")
async def test_socket_reads_run_on_read_threads_that_keep_their_connection():
    opened: list[str] = []

    def count(sender: Any, connection: Any, **_: Any) -> None:
        opened.append(threading.current_thread().name)

    connection_created.connect(count)
    try:
        for _ in range(3 * reads.READ_THREADS):
            assert not (await records.aopening_facts(call_id=CALL_ID)).reconnect
    finally:
        connection_created.disconnect(count)
    assert opened, "a read thread connects once"
    assert all(name.startswith("retellhub-read") for name in opened)
    if not connections["default"].settings_dict.get("OPTIONS", {}).get("pool"):
        # Without a pool each thread keeps its own; with one, each read takes a pooled one.
        assert len(opened) <= reads.READ_THREADS
