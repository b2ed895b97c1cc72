"""calls/rowpipeline.py and rowcursor.batch_transaction: a batch's statements, queued and
sent together on PostgreSQL, behave as the same statements run one by one."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.db import IntegrityError, connections, transaction

from calls.models import Call, CallEvent
from calls.rowcursor import batch_transaction, cursor_for, in_pipeline, shared_cursor
from calls.rowpipeline import DeferredStatements
from tests.factories import CallFactory

connection = connections["default"]  # the object itself: the shared cursors are per object
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres_only")]

INSERT_CALL = "INSERT INTO calls_call (call_id, agent_id, agent_name, call_type, direction, \
from_number, to_number, status, disconnection_reason, transcript, recording_url, \
public_log_url, call_summary, user_sentiment, last_event, field_versions, created_at, \
updated_at) VALUES (%s, '', '', '', '', '', '', %s, '', '', '', '', '', '', '', '{}', now(), \
now())"


def _prepared_here() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return sorted(name for (name,) in cursor.fetchall())


def test_statements_wait_until_rows_are_read_and_come_back_as_djangos() -> None:
    with transaction.atomic():
        statements = DeferredStatements(connection)
        statements.execute(INSERT_CALL, ["call_queued", "ongoing"])
        assert not Call.objects.filter(call_id="call_queued").exists()  # not sent yet
        statements.execute(
            "SELECT call_id, created_at FROM calls_call WHERE call_id = %s", ["call_queued"]
        )
        ((call_id, created_at),) = statements.fetchall()
    assert call_id == "call_queued"
    assert isinstance(created_at, datetime)
    assert created_at.utcoffset() is not None
    assert statements.rowcount == 1


def _inserted_with_a_taken_call_id() -> None:
    with transaction.atomic():
        statements = DeferredStatements(connection)
        statements.execute(INSERT_CALL, ["call_first", "ongoing"])
        statements.execute(INSERT_CALL, ["call_taken", "ongoing"])  # unique call_id
        statements.execute(INSERT_CALL, ["call_after", "ongoing"])
        statements.flush()


def test_a_statement_the_server_refuses_raises_djangos_error_and_skips_the_rest() -> None:
    CallFactory.create(call_id="call_taken")
    with pytest.raises(IntegrityError):
        _inserted_with_a_taken_call_id()
    assert list(Call.objects.values_list("call_id", flat=True)) == ["call_taken"]


def test_statements_are_prepared_as_psycopg_prepares_them_and_forgotten_with_its_own() -> None:
    connection.ensure_connection()
    threshold = connection.connection.prepare_threshold
    sql = "SELECT 1 + %s"
    with transaction.atomic():
        before = _prepared_here()
        statements = DeferredStatements(connection)
        for n in range(threshold + 3):
            statements.execute(sql, [n])
            statements.flush()  # each run on its own
        made = set(_prepared_here()) - set(before)
        assert len(made) == 1  # after psycopg's threshold, once
        statements.execute(sql, [1])
        assert statements.fetchall() == [(2,)]
    # psycopg deallocates every prepared statement after a ROLLBACK, and forgets them:
    # these are forgotten with its own, and prepared again when due.
    with transaction.atomic():
        Call.objects.exists()
        transaction.set_rollback(True)
    assert not set(_prepared_here()) & made
    with transaction.atomic():
        statements = DeferredStatements(connection)
        for n in range(threshold + 1):
            statements.execute(sql, [n])
        assert statements.fetchall() == [(1 + threshold,)]


def test_nothing_is_prepared_where_the_connection_prepares_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with transaction.atomic():
        before = _prepared_here()
        monkeypatch.setattr(connection.connection, "prepare_threshold", None)
        statements = DeferredStatements(connection)
        statements.execute("SELECT 40 + %s", [2])
        assert statements.fetchall() == [(42,)]
        assert _prepared_here() == before


def test_a_batch_transaction_queues_its_writes_and_sends_the_queue_before_any_other_query() -> None:
    with shared_cursor(), transaction.atomic(), batch_transaction(outermost=True):
        assert in_pipeline(connection)
        with cursor_for(connection) as cursor:
            cursor.execute(INSERT_CALL, ["call_in_batch", "ongoing"])
        # An ORM query meanwhile (the outbox's, say) runs after what was queued before it.
        assert Call.objects.filter(call_id="call_in_batch").exists()
        with cursor_for(connection) as cursor:
            cursor.execute(
                "UPDATE calls_call SET status = %s WHERE call_id = %s", ["ended", "call_in_batch"]
            )
    assert not in_pipeline(connection)
    assert Call.objects.get(call_id="call_in_batch").status == "ended"
    assert connection.get_autocommit()


def _batch_failing_when_it_reads() -> None:
    with shared_cursor(), transaction.atomic(), batch_transaction(outermost=True):
        with cursor_for(connection) as cursor:
            cursor.execute(INSERT_CALL, ["call_kept_not", "ongoing"])
            cursor.execute(INSERT_CALL, ["call_taken", "ongoing"])
            cursor.execute("SELECT 1")
            cursor.fetchall()  # sends, and fails


def test_a_batch_transaction_that_fails_keeps_nothing_and_hands_the_connection_back() -> None:
    CallFactory.create(call_id="call_taken")
    with pytest.raises(IntegrityError):
        _batch_failing_when_it_reads()
    assert list(Call.objects.values_list("call_id", flat=True)) == ["call_taken"]
    assert connection.connection.info.transaction_status.name == "IDLE"
    with transaction.atomic():  # the next transaction starts as usual
        CallEvent.objects.count()
        assert not connection.connection.autocommit


def _batch_failing_before_it_sends() -> None:
    with shared_cursor(), transaction.atomic(), batch_transaction(outermost=True):
        with cursor_for(connection) as cursor:
            cursor.execute(INSERT_CALL, ["call_never_sent", "ongoing"])
        raise RuntimeError("the merge failed")


def test_an_error_in_the_block_before_anything_was_sent_rolls_nothing_back() -> None:
    with pytest.raises(RuntimeError):
        _batch_failing_before_it_sends()
    assert not Call.objects.exists()
    assert connection.get_autocommit()
