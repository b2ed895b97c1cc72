"""calls/migrations/0008: the transcripts and merge bookkeeping become JSON text, both ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.apps.registry import Apps
from django.db import connection

from tests.schema_history import migrate, schema_at
from tests.test_storage import _compression, migration

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("calls", "0007_drop_redundant_indexes")
AFTER = ("calls", "0008_json_as_text")
COLUMNS = ("transcript_object", "transcript_with_tool_calls", "field_versions")

TURNS = [{"role": "user", "content": "Grüße aus Köln, 你好", "words": [{"start": 0.25}]}]
TOOL_TURNS = [*TURNS, {"role": "tool_call_invocation", "name": "end_call", "arguments": "{}"}]
VERSIONS = {"status": [3, 40, 1, "ab" * 32], "transcript": [40, 1, "ab" * 32]}
DOCUMENTS: dict[str, dict[str, object]] = {
    "call_a": {"transcript_object": TURNS, "transcript_with_tool_calls": TOOL_TURNS},
    "call_b": {"transcript_object": None, "transcript_with_tool_calls": None},
}


@pytest.fixture
def old_schema() -> Iterator[Apps]:
    with schema_at(BEFORE) as apps:
        Call = apps.get_model("calls", "Call")
        for call_id, documents in DOCUMENTS.items():
            Call.objects.create(call_id=call_id, field_versions=VERSIONS, **documents)
        yield apps


def _documents(apps: Apps) -> dict[str, dict[str, object]]:
    rows = apps.get_model("calls", "Call").objects.values("call_id", *COLUMNS)
    return {row.pop("call_id"): row for row in rows}


def _expected() -> dict[str, dict[str, object]]:
    return {call_id: {**docs, "field_versions": VERSIONS} for call_id, docs in DOCUMENTS.items()}


def _column_types() -> dict[str, str]:
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, "calls_call")
    return {
        column.name: connection.introspection.get_field_type(column.type_code, column)
        for column in description
        if column.name in COLUMNS
    }


def test_forwards_keeps_every_document(old_schema):
    assert _documents(migrate(AFTER)) == _expected()
    assert _column_types() == dict.fromkeys(COLUMNS, "TextField")


def test_backwards_gives_json_columns_with_the_same_documents(old_schema):
    migrate(AFTER)
    assert _documents(migrate(BEFORE)) == _expected()
    assert _column_types() == dict.fromkeys(COLUMNS, "JSONField")


def test_sqlite_no_longer_validates_the_text_as_json(old_schema):
    if connection.vendor != "sqlite":
        pytest.skip("the JSON_VALID checks are SQLite's")
    migrate(AFTER)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE name = 'calls_call'")
        (table_sql,) = cursor.fetchone()
    checked = [column for column in COLUMNS if f'JSON_VALID("{column}")' in table_sql]
    assert checked == []
    assert 'JSON_VALID("metadata")' in table_sql  # the searchable documents keep theirs


def test_postgresql_compresses_the_text_columns_with_lz4_both_ways(old_schema, postgres_only):
    with connection.cursor() as cursor:
        if not migration._lz4_available(cursor):
            pytest.skip("this PostgreSQL was built without LZ4; the migrations keep pglz")
    migrate(AFTER)
    assert {column: _compression("calls_call")[column] for column in COLUMNS} == dict.fromkeys(
        COLUMNS, "l"
    )
    migrate(BEFORE)  # as 0004 left them: field_versions was not among its large columns
    assert {column: _compression("calls_call")[column] for column in COLUMNS} == {
        "transcript_object": "l",
        "transcript_with_tool_calls": "l",
        "field_versions": "",
    }
