"""calls/rowwrites.py writes exactly what Model.save / bulk_create would, and fails as loudly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, NotSupportedError, connection, transaction
from django.db.models import Model
from django.db.models.signals import ModelSignal, post_save, pre_save
from django.utils import timezone

from calls.models import Call, CallEvent
from calls.rowcursor import shared_cursor
from calls.rowreads import rows_locked
from calls.rowwrites import (
    row_new,
    rows_insert,
    rows_keys_reserved,
    rows_update,
)
from tests.factories import CallFactory

pytestmark = pytest.mark.django_db


def _as_saved(call: Call) -> dict[str, object]:
    fresh = Call.objects.get(pk=call.pk)
    return {f.attname: getattr(fresh, f.attname) for f in Call._meta.concrete_fields}


def test_update_writes_the_named_columns_with_the_fields_own_conversions() -> None:
    by_orm, by_rows = CallFactory.create(), CallFactory.create()
    changes = {
        "status": "ended",
        "transcript_object": [{"role": "user", "content": "Grüße, \u2603"}],
        "metadata": None,  # SQL NULL, as the ORM stores it
        "combined_cost": Decimal("12.3400"),
        "ended_at": timezone.now(),
        "call_successful": False,
    }
    for call in (by_orm, by_rows):
        for name, value in changes.items():
            setattr(call, name, value)
    by_orm.save(update_fields=[*changes, "updated_at"])
    rows_update([(by_rows, [*changes, "updated_at"])])

    orm, rows = _as_saved(by_orm), _as_saved(by_rows)
    assert {name: rows[name] for name in changes} == {name: orm[name] for name in changes}
    assert rows["metadata"] is None
    assert rows["transcript_object"] == changes["transcript_object"]
    assert rows["combined_cost"] == Decimal("12.3400")
    assert rows["ended_at"] == changes["ended_at"]


def test_update_leaves_unnamed_columns_and_stamps_updated_at() -> None:
    call = CallFactory.create(agent_name="Before")
    stale = timezone.now() - timedelta(days=1)
    Call.objects.filter(pk=call.pk).update(updated_at=stale)
    call.agent_name = "Not saved"
    call.status = "ongoing"
    rows_update([(call, ["status", "updated_at"])])
    saved = Call.objects.get(pk=call.pk)
    assert (saved.status, saved.agent_name) == ("ongoing", "Before")
    assert saved.updated_at == call.updated_at
    assert saved.updated_at > stale


def test_update_groups_rows_by_column_set() -> None:
    calls = CallFactory.create_batch(3)
    calls[0].status, calls[1].status, calls[2].agent_name = "ended", "error", "Renamed"
    rows_update([(calls[0], ["status"]), (calls[1], ["status"]), (calls[2], ["agent_name"])])
    saved = Call.objects.in_bulk([c.pk for c in calls])
    assert [saved[c.pk].status for c in calls[:2]] == ["ended", "error"]
    assert saved[calls[2].pk].agent_name == "Renamed"


def test_update_of_a_missing_row_fails_like_save_with_update_fields() -> None:
    call = CallFactory.create()
    Call.objects.filter(pk=call.pk).delete()
    call.pk = call.id
    with pytest.raises(DatabaseError, match="matched 0 of 1"):
        rows_update([(call, ["status"])])


def test_insert_sets_keys_and_state_in_order() -> None:
    call = CallFactory.create()
    now = timezone.now()
    events = [
        CallEvent(
            call=call,
            event=name,
            raw_body=f'{{"event":"{name}","call":{{"call_id":"{call.call_id}","n":{number}}}}}',
            payload_key="call",
            body_sha256=f"{number:064x}",
            first_received_at=now,
            last_received_at=now,
        )
        for number, name in enumerate(["call_started", "call_ended", "call_analyzed"])
    ]
    rows_insert(events)
    assert all(not e._state.adding and e._state.db == connection.alias for e in events)
    stored = CallEvent.objects.in_bulk([e.pk for e in events])
    assert [stored[e.pk].event for e in events] == ["call_started", "call_ended", "call_analyzed"]
    assert [stored[e.pk].payload["n"] for e in events] == [0, 1, 2]
    assert stored[events[0].pk].delivery_count == 1  # the field's default


def test_insert_of_nothing_is_no_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        rows_insert([])


@pytest.mark.parametrize("signal", [pre_save, post_save])
@pytest.mark.parametrize("model", [Call, CallEvent])
def test_nothing_listens_to_saves_of_the_models_written_here(
    signal: ModelSignal, model: type[Model]
) -> None:
    # rows_update and rows_insert send no model signals: a receiver added for these models
    # would silently miss the webhook's writes. Route such a need through services instead.
    assert not signal.has_listeners(model)


def test_insert_unless_exists_skips_stored_rows_and_returns_the_inserted_ones() -> None:
    existing = CallFactory.create(agent_name="Kept")
    new = [Call(call_id="call_new_1"), Call(call_id=existing.call_id), Call(call_id="call_new_2")]
    inserted = rows_insert(new, unless_exists="call_id")
    assert [call.call_id for call in inserted] == ["call_new_1", "call_new_2"]
    stored = Call.objects.in_bulk([call.pk for call in inserted])
    assert [stored[call.pk].call_id for call in inserted] == ["call_new_1", "call_new_2"]
    assert new[1]._state.adding  # skipped: not saved, no key
    assert Call.objects.get(call_id=existing.call_id).agent_name == "Kept"


def test_locked_rows_load_only_the_asked_columns_in_key_order() -> None:
    for call_id in ("call_b", "call_a", "call_c"):
        CallFactory.create(call_id=call_id, field_versions={"status": [1, call_id]})
    rows = rows_locked(
        Call, key="call_id", values={"call_c", "call_a", "call_x"}, columns=["field_versions"]
    )
    assert [row.call_id for row in rows] == ["call_a", "call_c"]
    assert rows[0].field_versions == {"status": [1, "call_a"]}  # decoded by the field
    assert "transcript" in rows[0].get_deferred_fields()
    assert rows_locked(Call, key="call_id", values=[], columns=[]) == []


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.usefixtures("postgres_only")
def test_locked_reads_are_planned_for_the_table_as_it_is_not_prepared() -> None:
    """A prepared statement keeps the plan it got first; made while the calls table was
    nearly empty, the webhook's locked read scanned the whole table from then on. Other
    statements are still prepared as configured."""
    CallFactory.create(call_id="call_planned")
    psycopg_connection = connection.connection
    assert psycopg_connection is not None
    threshold = psycopg_connection.prepare_threshold
    psycopg_connection.prepare_threshold = 1  # prepare anything run twice
    try:
        for _ in range(4):
            rows = rows_locked(Call, key="call_id", values=["call_planned"], columns=[])
            assert [row.call_id for row in rows] == ["call_planned"]
            Call.objects.filter(call_id="call_planned").exists()
        prepared = _prepared_statements()
        assert psycopg_connection.prepare_threshold == 1  # given back
    finally:
        psycopg_connection.prepare_threshold = threshold
    assert not [statement for statement in prepared if "FOR UPDATE" in statement]
    assert [statement for statement in prepared if "LIMIT 1" in statement]  # exists() was


@pytest.mark.usefixtures("postgres_only")
def test_where_sequential_scans_are_priced_out_locked_reads_are_prepared_and_use_the_index(
    settings: Any,
) -> None:
    """The writer processes' connections (DATABASE_INDEX_SCANS_ONLY): a plan made for an
    empty, never analysed calls table still finds rows by the index, so it may be kept."""
    settings.DATABASE_INDEX_SCANS_ONLY = True
    psycopg_connection = connection.connection
    assert psycopg_connection is not None
    threshold = psycopg_connection.prepare_threshold
    psycopg_connection.prepare_threshold = 1
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # as the writers connect
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")  # the kept one
            keys = ["call_a", "call_b", "call_c", "call_d"]  # a batch's worth
            for _ in range(3):
                assert rows_locked(Call, key="call_id", values=keys, columns=[]) == []
            cursor.execute(
                "SELECT name, statement, generic_plans + custom_plans FROM pg_prepared_statements"
            )
            prepared = [row for row in cursor.fetchall() if "FOR UPDATE" in row[1]]
            [(name, _, plans)] = prepared
            cursor.execute(f"EXPLAIN EXECUTE \"{name}\"('call_a', 'call_b', 'call_c', 'call_d')")
            plan = "\n".join(row[0] for row in cursor.fetchall())
    finally:
        psycopg_connection.prepare_threshold = threshold
    assert plans >= 2
    assert "Seq Scan" not in plan  # without the option: a Seq Scan of every call
    assert "Index Scan on call_call_id_uniq" in plan or "Index Scan using call_call_id_uniq" in plan


def test_insert_of_many_rows_keeps_their_order_and_skips_the_stored_ones() -> None:
    # On PostgreSQL, in statements of at most 50 parameters: one call each.
    CallFactory.create(call_id="call_many_07", agent_name="Kept")
    new = [Call(call_id=f"call_many_{number:02}") for number in range(12)]
    inserted = rows_insert(new, unless_exists="call_id")
    expected = [f"call_many_{number:02}" for number in range(12) if number != 7]
    assert [call.call_id for call in inserted] == expected
    stored = Call.objects.in_bulk([call.pk for call in inserted])
    assert [stored[call.pk].call_id for call in inserted] == expected
    assert len({call.pk for call in inserted}) == 11
    assert Call.objects.get(call_id="call_many_07").agent_name == "Kept"


def test_an_insert_the_database_refuses_raises_djangos_error_and_stores_nothing() -> None:
    CallFactory.create(call_id="call_taken")
    new = [Call(call_id="call_free"), Call(call_id="call_taken")]
    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(new)
    assert not Call.objects.filter(call_id="call_free").exists()


def test_writes_in_a_shared_cursor_block_open_one_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    stored = CallFactory.create(call_id="call_shared")
    opened = []
    real_cursor = connection.cursor

    def counted() -> Any:
        opened.append(1)
        return real_cursor()

    monkeypatch.setattr(connection, "cursor", counted)
    with shared_cursor(), shared_cursor():  # nested: the outer one's cursor serves
        [locked] = rows_locked(Call, key="call_id", values=["call_shared"], columns=[])
        rows_insert([Call(call_id="call_shared_new")])
        locked.status = "ended"
        rows_update([(locked, ["status"])])
    assert len(opened) == 1
    rows_update([(locked, ["status"])])  # outside a block: a cursor of its own
    assert len(opened) == 2
    assert Call.objects.get(pk=stored.pk).status == "ended"


def test_reserved_keys_are_free_and_inserted_as_given() -> None:
    highest = CallFactory.create().pk
    keys = rows_keys_reserved(Call, 3)
    assert len(set(keys)) == 3
    assert min(keys) > highest
    assert rows_keys_reserved(Call, 0) == []
    calls = [Call(pk=key, call_id=f"call_keyed_{key}") for key in reversed(keys)]
    inserted = rows_insert(calls, keyed=True)
    assert [call.pk for call in inserted] == list(reversed(keys))
    assert not any(call._state.adding for call in inserted)
    stored = Call.objects.in_bulk(keys)
    assert {stored[key].call_id for key in keys} == {f"call_keyed_{key}" for key in keys}
    # What the database gives next is past them, and so are the next reserved keys.
    assert CallFactory.create().pk > max(keys)
    assert min(rows_keys_reserved(Call, 2)) > max(keys)


@pytest.mark.django_db(transaction=True)
def test_sqlite_reserves_keys_only_inside_its_write_transaction() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own way of reserving keys: the CI's first pass runs it")
    with pytest.raises(NotSupportedError):
        rows_keys_reserved(Call, 1)


@pytest.mark.parametrize("model", [Call, CallEvent])
def test_a_new_row_is_what_the_models_own_constructor_makes(model: type[Model]) -> None:
    values: dict[str, Any] = {"id": 7, "call_id": 3 if model is CallEvent else "call_x"}
    fast, slow = row_new(model, **values), model(**values)
    names = [field.attname for field in model._meta.concrete_fields]
    assert [getattr(fast, name) for name in names] == [getattr(slow, name) for name in names]
    assert fast._state.adding
    assert fast._state.db is None


def test_new_rows_get_a_fresh_value_of_a_callable_default() -> None:
    first, second = row_new(Call, call_id="call_1"), row_new(Call, call_id="call_2")
    assert first.field_versions == {}
    assert first.field_versions is not second.field_versions


def test_a_new_row_refuses_a_field_the_model_lacks() -> None:
    with pytest.raises(TypeError, match="has no fields \\['colour'\\]"):
        row_new(Call, call_id="call_1", colour="red")


def test_a_keyed_insert_refuses_to_skip_stored_rows() -> None:
    with pytest.raises(ValueError, match="reads nothing back"):
        rows_insert([Call(pk=1, call_id="call_1")], unless_exists="call_id", keyed=True)
