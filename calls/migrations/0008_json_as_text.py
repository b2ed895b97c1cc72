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


def _compress(schema_editor, columns, method) -> None:
    """``SET COMPRESSION method`` on ``columns`` where PostgreSQL has LZ4 (see 0004)."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    lz4 = importlib.import_module("calls.migrations.0004_lz4_compression")
    with connection.cursor() as cursor:
        if not lz4._lz4_available(cursor):
            return
        quote = connection.ops.quote_name
        changes = ", ".join(
            f"ALTER COLUMN {quote(column)} SET COMPRESSION {method}" for column in columns
        )
        cursor.execute(f"ALTER TABLE {quote(TABLE)} {changes}")


def compress_text_columns(apps, schema_editor) -> None:
    _compress(schema_editor, [*TRANSCRIPTS, BOOKKEEPING], "lz4")


def compress_json_columns(apps, schema_editor) -> None:
    # As before this migration: 0004 set LZ4 on the transcripts only.
    _compress(schema_editor, TRANSCRIPTS, "lz4")


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
