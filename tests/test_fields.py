"""calls.fields.JSONTextField: JSON documents kept as text, behaving as a JSONField does."""

from __future__ import annotations

import io
import json

import pytest
from django.core import serializers
from django.core.exceptions import ValidationError
from django.db import connection

from calls.models import Call
from tests.factories import CallFactory

pytestmark = pytest.mark.django_db

TURNS = [
    {"role": "agent", "content": "Grüße, José! 你好", "words": [{"word": "Grüße", "start": 0.5}]},
    {"role": "user", "content": "A number past 64 bits: ", "words": [], "n": 2**70},
]
VERSIONS = {"status": [3, 40, 2, "ab" * 32], "call_object": [40, 2, "ab" * 32]}


def _stored_text(call: Call, column: str) -> str | None:
    with connection.cursor() as cursor:
        # The column name comes from this test, not from input.
        cursor.execute(f"SELECT {column} FROM calls_call WHERE id = %s", [call.pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_documents_read_back_as_they_were_written():
    call = CallFactory.create(transcript_object=TURNS, field_versions=VERSIONS)
    call.refresh_from_db()
    assert call.transcript_object == TURNS
    assert call.transcript_object[1]["n"] == 2**70  # exact, not a float
    assert call.field_versions == VERSIONS
    assert call.transcript_with_tool_calls is None


def test_the_column_holds_the_documents_compact_json_text():
    call = CallFactory.create(transcript_object=TURNS)
    text = _stored_text(call, "transcript_object")
    # Compact, and UTF-8 rather than \\u escapes.
    assert text == json.dumps(TURNS, ensure_ascii=False, separators=(",", ":"))


def test_none_is_sql_null_and_filters_as_null():
    empty = CallFactory.create(transcript_object=None)
    full = CallFactory.create(transcript_object=TURNS)
    assert _stored_text(empty, "transcript_object") is None
    assert list(Call.objects.filter(transcript_object__isnull=False)) == [full]
    assert list(Call.objects.filter(transcript_object=None)) == [empty]


def test_updates_and_value_lists_encode_and_decode():
    call = CallFactory.create(field_versions=VERSIONS)
    Call.objects.filter(pk=call.pk).update(field_versions={}, transcript_object=TURNS)
    assert Call.objects.filter(pk=call.pk).values_list(
        "field_versions", "transcript_object"
    ).get() == ({}, TURNS)


def test_the_default_is_a_fresh_empty_document():
    first, second = Call(call_id="call_a"), Call(call_id="call_b")
    first.field_versions["status"] = [1]
    assert second.field_versions == {}


def test_text_from_a_form_or_fixture_becomes_its_document():
    field = Call._meta.get_field("transcript_object")
    assert field.to_python(json.dumps(TURNS)) == TURNS
    assert field.to_python(TURNS) == TURNS
    with pytest.raises(ValidationError):
        field.to_python("{not json")


def test_dumpdata_and_loaddata_keep_the_documents():
    call = CallFactory.create(transcript_object=TURNS, field_versions=VERSIONS)
    text = serializers.serialize("json", Call.objects.filter(pk=call.pk))
    assert json.loads(text)[0]["fields"]["transcript_object"] == TURNS
    Call.objects.filter(pk=call.pk).update(transcript_object=None, field_versions={})
    for restored in serializers.deserialize("json", io.StringIO(text)):
        restored.save()
    call.refresh_from_db()
    assert (call.transcript_object, call.field_versions) == (TURNS, VERSIONS)
