"""PostgreSQL: compress the large text and JSON columns with LZ4 instead of pglz.

Every webhook writes two copies of a 5-20 KB call object (the event's raw body and
payload) and rewrites the call's transcript and latest call object. PostgreSQL compresses
each value over about 2 KB before storing it out of line; with its default, pglz, that
compression was the largest single cost of a delivery on the database server. Measured on
the 2-core benchmark machine, storing a 9 KB body as text took 0.13 ms of PostgreSQL CPU
with pglz and 0.04 ms with LZ4, and an event row (payload and raw body) 0.42 and 0.21 ms.

Only values written from now on are affected; existing ones stay readable as they are.
PostgreSQL built without LZ4 support (it is optional) keeps pglz, and other databases are
left alone.
"""

from django.db import DatabaseError, migrations, transaction

LARGE_COLUMNS = {
    "calls_call": (
        "transcript",
        "transcript_object",
        "transcript_with_tool_calls",
        "call_summary",
        "call_object",
    ),
    "calls_callevent": ("payload", "raw_body"),
}


def _lz4_available(cursor) -> bool:
    try:
        with transaction.atomic():  # a savepoint: the failed SET must not abort the migration
            cursor.execute("SET LOCAL default_toast_compression = 'lz4'")
    except DatabaseError:
        return False
    return True


def _set_compression(schema_editor, method: str) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        if method == "lz4" and not _lz4_available(cursor):
            return
        quote = connection.ops.quote_name
        for table, columns in LARGE_COLUMNS.items():
            changes = ", ".join(
                f"ALTER COLUMN {quote(column)} SET COMPRESSION {method}" for column in columns
            )
            cursor.execute(f"ALTER TABLE {quote(table)} {changes}")


def forwards(apps, schema_editor) -> None:
    _set_compression(schema_editor, "lz4")


def backwards(apps, schema_editor) -> None:
    _set_compression(schema_editor, "default")


class Migration(migrations.Migration):
    dependencies = [("calls", "0003_call_duration_cost_indexes")]

    operations = [migrations.RunPython(forwards, backwards, elidable=True)]
