"""How PostgreSQL stores the large columns (calls/migrations/0004_lz4_compression.py)."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection

from tests.factories import CallEventFactory

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
