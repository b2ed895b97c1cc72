"""A delivery's call object is stored once, in its raw body: drop ``CallEvent.payload``.

Until now each event stored the call object twice, as the bytes received (``raw_body``) and
parsed (``payload``, a JSON column). ``CallEvent.payload`` is now read from ``raw_body``:
the object under ``payload_key`` ("call", or legacy "data"), or the whole body when there is
no key (the call socket's session summaries).

Forwards: an old retention scrub blanked raw bodies and kept a scrubbed payload; such
events, and any other whose payload is not what its raw body holds, get a raw body built
from the payload (``{"event": ..., payload_key: payload}``, or the payload itself) before
the column goes, so nothing is lost. Backwards re-adds the column filled from the raw
bodies, compressed with LZ4 on PostgreSQL as migration 0004 left it.
"""

import importlib
import json

from django.db import migrations, models

BATCH_SIZE = 500


def payload_of(raw_body, payload_key):
    """What CallEvent.payload reads from a raw body; raises ValueError or KeyError."""
    document = json.loads(raw_body)
    return document[payload_key] if payload_key else document


def payloads_by_pk(CallEvent, pks):
    """``payload_of`` each of these events, by primary key (for 0006 and 0009)."""
    rows = CallEvent.objects.filter(pk__in=pks).values_list("pk", "raw_body", "payload_key")
    return {pk: payload_of(body, key) for pk, body, key in rows}


def version_body_sha256(field_versions, key):
    """The body hash ending the merge version stored under ``key`` in a call's
    ``field_versions`` (``[rank, turns, body_sha256]``, calls/merge.py); None without one."""
    version = (field_versions or {}).get(key)
    if isinstance(version, list) and len(version) >= 3 and isinstance(version[2], str):
        return version[2]
    return None


def in_batches(queryset, *fields):
    """``queryset``'s rows by primary key, ``BATCH_SIZE`` at a time; only ``fields`` loaded.

    Keyset pages rather than one cursor: the caller updates the table it reads.
    """
    last = 0
    while True:
        rows = list(queryset.filter(pk__gt=last).order_by("pk").only("pk", *fields)[:BATCH_SIZE])
        if not rows:
            return
        yield rows
        last = rows[-1].pk


def compress_like_0004(schema_editor, table, column):
    """On PostgreSQL with LZ4, a re-added column compressed as 0004 compressed it."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    lz4 = importlib.import_module("calls.migrations.0004_lz4_compression")
    with connection.cursor() as cursor:
        if lz4._lz4_available(cursor):
            quote = connection.ops.quote_name
            cursor.execute(
                f"ALTER TABLE {quote(table)} ALTER COLUMN {quote(column)} SET COMPRESSION lz4"
            )


def _holds_its_payload(event):
    try:
        return payload_of(event.raw_body, event.payload_key) == event.payload
    except (ValueError, KeyError, TypeError):
        return False


def _body_around(event):
    payload = event.payload
    document = {"event": event.event, event.payload_key: payload} if event.payload_key else payload
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def raw_bodies_hold_their_payloads(apps, schema_editor):
    CallEvent = apps.get_model("calls", "CallEvent")
    fields = ("event", "payload_key", "raw_body", "payload")
    for batch in in_batches(CallEvent.objects.all(), *fields):
        stale = [event for event in batch if not _holds_its_payload(event)]
        for event in stale:
            event.raw_body = _body_around(event)
        CallEvent.objects.bulk_update(stale, ["raw_body"])


def payloads_from_raw_bodies(apps, schema_editor):
    CallEvent = apps.get_model("calls", "CallEvent")
    for batch in in_batches(CallEvent.objects.all(), "payload_key", "raw_body"):
        for event in batch:
            event.payload = payload_of(event.raw_body, event.payload_key)
        CallEvent.objects.bulk_update(batch, ["payload"])


def compress_payload(apps, schema_editor):
    compress_like_0004(schema_editor, "calls_callevent", "payload")


class Migration(migrations.Migration):
    dependencies = [("calls", "0004_lz4_compression")]

    operations = [
        # Nullable first, so that going backwards the column can be added before it is filled.
        migrations.AlterField(
            model_name="callevent",
            name="payload",
            field=models.JSONField(help_text="The call object as received.", null=True),
        ),
        migrations.RunPython(raw_bodies_hold_their_payloads, payloads_from_raw_bodies),
        migrations.RunPython(migrations.RunPython.noop, compress_payload),
        migrations.RemoveField(model_name="callevent", name="payload"),
        migrations.AlterField(
            model_name="callevent",
            name="payload_key",
            field=models.CharField(
                blank=True,
                default="",
                help_text="Where the body holds the call object: 'call', or legacy 'data'. "
                "Empty: the body is the payload (socket sessions).",
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="callevent",
            name="raw_body",
            field=models.TextField(
                help_text="The exact request body (after a retention scrub: what is left of it)."
            ),
        ),
    ]
