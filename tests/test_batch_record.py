"""How a batch of deliveries is written (services.call_events_record): each delivery's
answer, the statements per step, the round trips on PostgreSQL, and batches that race
another transaction for a new call or body."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from calls import services
from calls.batchread import BatchRead
from calls.models import Call, CallEvent
from calls.rowpipeline import DeferredStatements
from calls.rowwrites import rows_keys_reserved
from calls.services import call_events_record
from tests.merged import CALL_ID, incoming, lifecycle_bodies


@pytest.mark.django_db
def test_a_batch_answers_each_delivery_in_its_order_and_counts_repeats():
    bodies = lifecycle_bodies(CALL_ID)
    batch = [bodies[3], bodies[0], bodies[3], bodies[4], bodies[3]]
    outcomes = call_events_record(deliveries=[incoming(body) for body in batch])
    assert [outcome.created for outcome in outcomes] == [True, True, False, True, False]
    assert [o.event.raw_body.encode() for o in outcomes] == batch
    assert outcomes[4].event.delivery_count == 3
    assert CallEvent.objects.count() == 3
    call = Call.objects.get()
    assert call.status == "ended"
    assert call.call_object_event_id == outcomes[3].event.pk  # call_analyzed's


def statements(queries: CaptureQueriesContext) -> list[tuple[str, str]]:
    """(verb, table) of each statement, without savepoints and the outbox's destination
    lookup (memoised for a few seconds, so present or not by timing)."""
    found = []
    for query in queries.captured_queries:
        match = re.search(r'^(?:\d+ times: )?(\w+).*?"(calls_\w+|notifications_\w+)"', query["sql"])
        if match and match[2] != "notifications_destination":
            found.append((match[1], match[2]))
    return found


def steps(queries: CaptureQueriesContext) -> list[tuple[str, str]]:
    """``statements``, with a step sent as several statements in a row counted once."""
    found = statements(queries)
    return [step for n, step in enumerate(found) if n == 0 or found[n - 1] != step]


@pytest.mark.django_db
def test_a_batch_makes_one_step_per_stage_however_many_deliveries(settings):
    settings.RECORDINGS_CAPTURE = False
    call_ids = [f"call_batch_{n}" for n in range(8)]
    bodies = {call_id: lifecycle_bodies(call_id) for call_id in call_ids}
    started_and_ended = [incoming(bodies[c][i]) for c in call_ids for i in (0, 3)]
    postgresql = connection.vendor == "postgresql"
    with CaptureQueriesContext(connection) as queries:
        call_events_record(deliveries=started_and_ended)
    assert steps(queries) == [
        # Lock the stored calls (none yet), find the stored bodies (none), reserve keys
        # for the new calls and bodies: on PostgreSQL in one statement (calls/batchread.py),
        # on SQLite one after the other, the keys from each table's highest.
        *([("WITH", "calls_call")] if postgresql else [("SELECT", "calls_call")]),
        *([] if postgresql else [("SELECT", "calls_callevent"), *_SQLITE_KEYS]),
        ("INSERT", "calls_callevent"),  # the new bodies, under their reserved keys
        ("INSERT", "calls_call"),  # the new calls, merged: inserted whole, not updated
    ]
    # One statement per step, but on PostgreSQL inserts of at most 50 parameters each
    # (calls/rowwrites.py): 8 calls of 38 columns, 16 events of 12.
    sent = statements(queries)
    assert sent.count(("INSERT", "calls_call")) == (8 if postgresql else 1)
    assert sent.count(("INSERT", "calls_callevent")) == (4 if postgresql else 1)
    analyzed_and_a_repeat = [incoming(bodies[c][4]) for c in call_ids] + started_and_ended[:1]
    with CaptureQueriesContext(connection) as queries:
        call_events_record(deliveries=analyzed_and_a_repeat)
    assert steps(queries) == [
        *([("WITH", "calls_call")] if postgresql else [("SELECT", "calls_call")]),
        # (On SQLite, the stored bodies and the highest event key: one step as counted.)
        *([] if postgresql else [("SELECT", "calls_callevent")]),
        ("INSERT", "calls_callevent"),
        ("UPDATE", "calls_call"),
        ("UPDATE", "calls_callevent"),  # the repeat: its delivery count, nothing read back
    ]
    winners = Call.objects.values_list("call_object_event__event", flat=True)
    assert set(winners) == {"call_analyzed"}


# On SQLite, the highest keys given so far: for new calls, then for new events.
_SQLITE_KEYS = [("SELECT", "calls_call"), ("SELECT", "calls_callevent")]


def _stale_reads(monkeypatch: pytest.MonkeyPatch, *, times: int) -> list[list[str]]:
    """The batch's first ``times`` reads find no stored call, as when another transaction
    stores the call after the read; returns the call ids of every read."""
    real_read = services.batch_read
    looks: list[list[str]] = []

    def stale(call_ids: Any, digests: Any) -> BatchRead:
        read = real_read(call_ids, digests)
        looks.append(sorted(call_ids))
        if len(looks) <= times:
            read.new_call_keys += rows_keys_reserved(Call, len(read.calls))
            read.calls = []
        return read

    monkeypatch.setattr(services, "batch_read", stale)
    return looks


def _stored_meanwhile_and_written_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch takes a stored call for new (its locked read, made stale once, finds
    nothing), as when another transaction stores it meanwhile: its insert fails on the
    call id, and the batch, written again, merges into the stored call instead of failing
    or storing the event twice."""
    bodies = lifecycle_bodies(CALL_ID)
    first = call_events_record(deliveries=[incoming(bodies[0])])[0]
    looks = _stale_reads(monkeypatch, times=1)
    outcome = call_events_record(deliveries=[incoming(bodies[3])])[0]
    assert looks == [[CALL_ID], [CALL_ID]]
    assert outcome.created
    assert outcome.call.pk == first.call.pk
    assert CallEvent.objects.count() == 2
    assert Call.objects.get().status == "ended"


@pytest.mark.django_db
def test_a_new_call_another_transaction_stored_meanwhile_is_written_again(monkeypatch):
    _stored_meanwhile_and_written_again(monkeypatch)


@pytest.mark.django_db
def test_a_new_call_that_keeps_being_stored_meanwhile_fails_without_writing(monkeypatch):
    bodies = lifecycle_bodies(CALL_ID)
    call_events_record(deliveries=[incoming(bodies[0])])
    _stale_reads(monkeypatch, times=services.NEW_CALL_ATTEMPTS)
    with pytest.raises(IntegrityError):
        call_events_record(deliveries=[incoming(bodies[3])])
    assert CallEvent.objects.count() == 1
    assert Call.objects.get().status == "ongoing"


@pytest.mark.django_db(transaction=True)
def test_a_batch_of_its_own_waits_on_postgresql_twice(monkeypatch):
    """Outside any transaction (as the writer runs it), a batch on PostgreSQL sends its
    statements twice: its BEGIN with its read, then every write with the COMMIT (a
    re-delivery's count too). SQLite writes as before. (The first batch in a while also
    looks for notification destinations, which sends what is queued before it.)"""
    sent: list[list[str]] = []
    real_flush = DeferredStatements.flush

    def recorded(statements: DeferredStatements) -> None:
        sent.append([sql.split()[0] for sql in statements.queued()])
        real_flush(statements)

    bodies = lifecycle_bodies(CALL_ID)
    call_events_record(deliveries=[incoming(bodies[0])])  # (and looks for destinations)
    monkeypatch.setattr(DeferredStatements, "flush", recorded)
    outcomes = call_events_record(deliveries=[incoming(bodies[3]), incoming(bodies[0])])
    assert [outcome.created for outcome in outcomes] == [True, False]
    assert not connection.in_atomic_block
    call = Call.objects.get()
    assert (call.status, call.call_object_event_id) == ("ended", outcomes[0].event.pk)
    assert CallEvent.objects.get(pk=outcomes[1].event.pk).delivery_count == 2
    if connection.vendor == "postgresql":
        assert [verbs for verbs in sent if verbs] == [
            ["BEGIN", "WITH"],
            ["INSERT", "UPDATE", "UPDATE", "COMMIT"],  # the event, the call, the count
        ]
    else:
        assert sent == []


@pytest.mark.django_db(transaction=True)
def test_a_new_call_stored_meanwhile_fails_the_commit_and_the_batch_is_written_again(
    monkeypatch,
):
    """As above, in a transaction of its own: on PostgreSQL the insert is pipelined and
    fails only at the COMMIT, and nothing of the first attempt is kept."""
    _stored_meanwhile_and_written_again(monkeypatch)


def _body_stored_meanwhile_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch takes a stored body for new (its read, made stale once, finds it
    unstored), as when a retry races the original delivery: its insert fails on the
    body's digest, and the batch, written again, counts a re-delivery instead of storing
    the event twice or merging it again."""
    bodies = lifecycle_bodies(CALL_ID)
    first = call_events_record(deliveries=[incoming(bodies[0])])[0]
    real_read = services.batch_read
    reads: list[BatchRead] = []

    def stale_once(call_ids: Any, digests: Any) -> BatchRead:
        read = real_read(call_ids, digests)
        if not reads:
            read.new_event_keys += rows_keys_reserved(CallEvent, len(read.stored_events))
            read.stored_events = {}
        reads.append(read)
        return read

    monkeypatch.setattr(services, "batch_read", stale_once)
    repeat, ended = call_events_record(deliveries=[incoming(bodies[0]), incoming(bodies[3])])
    assert len(reads) == 2
    assert (repeat.created, repeat.event.pk) == (False, first.event.pk)
    assert ended.created
    assert CallEvent.objects.get(pk=first.event.pk).delivery_count == 2
    assert CallEvent.objects.count() == 2
    assert Call.objects.get().status == "ended"


@pytest.mark.django_db
def test_a_body_another_transaction_stored_meanwhile_is_counted_when_written_again(
    monkeypatch,
):
    _body_stored_meanwhile_and_counted(monkeypatch)


@pytest.mark.django_db(transaction=True)
def test_a_body_stored_meanwhile_fails_the_commit_and_is_counted_when_written_again(
    monkeypatch,
):
    """As above, in a transaction of its own: on PostgreSQL the insert is pipelined and
    fails only at the COMMIT."""
    _body_stored_meanwhile_and_counted(monkeypatch)
