"""How the webhook tables are stored: compression of the large columns on PostgreSQL
(calls/migrations/0004_lz4_compression.py), their indexes (0007) and unique keys, and the
prepared statements that write them."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from calls.models import Call
from tests.factories import CallEventFactory, CallFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("calls.migrations.0004_lz4_compression")
# Dropped by migrations 0005 and 0006: a delivery's call object is stored once, in its raw body.
DROPPED = {"calls_call": {"call_object"}, "calls_callevent": {"payload"}}


def _compression(table: str) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, attcompression FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [table],
        )
        return dict(cursor.fetchall())


def test_large_columns_are_compressed_with_lz4(postgres_only: None) -> None:
    with connection.cursor() as cursor:
        if not migration._lz4_available(cursor):
            pytest.skip("this PostgreSQL was built without LZ4; the migration keeps pglz")
    for table, columns in migration.LARGE_COLUMNS.items():
        methods = _compression(table)
        kept = [column for column in columns if column not in DROPPED[table]]
        assert {column: methods[column] for column in kept} == dict.fromkeys(kept, "l")
        assert not DROPPED[table] & methods.keys()
        # Small columns keep the default: compressing them gains nothing.
        assert methods["id"] == ""


def test_large_values_read_back_exactly(postgres_only: None) -> None:
    body = '{"event":"call_ended","call":{"transcript":"' + "Grüße " * 4000 + '"}}'
    event = CallEventFactory.create(raw_body=body)
    event.refresh_from_db()
    assert event.raw_body == body
    assert event.payload["transcript"] == "Grüße " * 4000


def _index_columns(table: str) -> list[tuple[str, ...]]:
    """Each index of ``table`` as its columns, in order, however it was created."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
            " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = %s::regclass GROUP BY i.indexrelid",
            [table],
        )
        return sorted(tuple(columns) for (columns,) in cursor.fetchall())


def test_webhook_tables_carry_no_index_that_nothing_reads(postgres_only: None) -> None:
    # Every index is maintained on each webhook write. unique=True on a CharField would add
    # a varchar_pattern_ops twin, and the events' own call index repeats the prefix of
    # (call, time): migration 0007 dropped those, and this keeps them from coming back.
    assert _index_columns("calls_callevent") == [
        ("body_sha256",),
        ("call_id", "first_received_at"),
        ("event", "first_received_at"),
        ("first_received_at",),
        ("id",),
    ]
    assert ("call_id",) in _index_columns("calls_call")
    assert _index_columns("calls_call").count(("call_id",)) == 1


@pytest.mark.parametrize(
    ("create", "duplicate"),
    [
        (lambda: CallFactory.create(call_id="call_same"), lambda: Call(call_id="call_same")),
        (
            lambda: CallEventFactory.create(body_sha256="a" * 64),
            lambda: CallEventFactory.build(call=CallFactory.create(), body_sha256="a" * 64),
        ),
    ],
    ids=["call_id", "body_sha256"],
)
def test_call_ids_and_body_hashes_stay_unique(create: Any, duplicate: Any) -> None:
    create()
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate().save()


def test_repeated_statements_are_prepared_on_the_server(postgres_only: None) -> None:
    threshold = settings.PREPARE_THRESHOLD
    if connection.settings_dict["OPTIONS"].get("prepare_threshold") != threshold:
        pytest.skip("prepared statements are off (DATABASE_PREPARED_STATEMENTS=false)")
    call = CallFactory.create()
    for _ in range(threshold + 1):
        Call.objects.filter(pk=call.pk).values_list("call_id", flat=True).get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [statement for (statement,) in cursor.fetchall()]
    assert any('FROM "calls_call"' in statement for statement in prepared)
