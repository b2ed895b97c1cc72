"""Keep the call's transcripts and merge bookkeeping as JSON text, not JSON columns.

``transcript_object``, ``transcript_with_tool_calls`` and ``field_versions`` are written on
most deliveries and never searched inside. As JSON columns the database parsed each value
on every write: PostgreSQL into ``jsonb`` (every word timing a ``numeric``), SQLite for its
``JSON_VALID`` check. See ``calls.fields.JSONTextField``.

On PostgreSQL the type change rewrites the ``calls_call`` table (``USING column::text``,
holding an exclusive lock while it runs) and drops the columns' compression setting, so
LZ4 is set again afterwards; ``field_versions``, over 2 KB once a call has ended, is now
compressed with LZ4 too. On SQLite the table is rebuilt without the three checks. The
stored documents are unchanged (PostgreSQL writes ``jsonb`` back out with spaces, which
reads the same). Backwards restores the JSON columns and their compression as before.
"""

import importlib

from django.db import migrations

import calls.fields

TABLE = "calls_call"
TRANSCRIPTS = ("transcript_object", "transcript_with_tool_calls")
BOOKKEEPING = "field_versions"


# LZ4 where PostgreSQL has it, one column at a time, as 0005 re-compressed its column.
_0005 = importlib.import_module("calls.migrations.0005_callevent_payload_from_raw_body")


def compress_text_columns(apps, schema_editor) -> None:
    for column in (*TRANSCRIPTS, BOOKKEEPING):
        _0005.compress_like_0004(schema_editor, TABLE, column)


def compress_json_columns(apps, schema_editor) -> None:
    # As before this migration: 0004 set LZ4 on the transcripts only.
    for column in TRANSCRIPTS:
        _0005.compress_like_0004(schema_editor, TABLE, column)


class Migration(migrations.Migration):
    dependencies = [("calls", "0007_drop_redundant_indexes")]

    operations = [
        # Backwards this runs last, after the columns are JSON again.
        migrations.RunPython(migrations.RunPython.noop, compress_json_columns),
        migrations.AlterField(
            model_name="call",
            name="field_versions",
            field=calls.fields.JSONTextField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="call",
            name="transcript_object",
            field=calls.fields.JSONTextField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="call",
            name="transcript_with_tool_calls",
            field=calls.fields.JSONTextField(blank=True, null=True),
        ),
        migrations.RunPython(compress_text_columns, migrations.RunPython.noop),
    ]
