"""``Call.call_object`` becomes a reference to the event that carried it.

The call copied the most advanced call object received into a JSON column, rewritten on
nearly every delivery, though the same object is stored in that event's raw body. The call
now refers to the event instead (``Call.call_object_event``; ``Call.call_object`` reads
that event's payload).

Forwards: the merge records the call object's version in ``field_versions["call_object"]``
as ``[rank, turns, body_sha256]`` (calls/merge.py), so the event is the call's event with
that body hash; a call whose event is not found is left without one. Backwards re-adds the
column filled from the referred events' raw bodies, compressed with LZ4 on PostgreSQL as
migration 0004 left it.
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

previous = importlib.import_module("calls.migrations.0005_callevent_payload_from_raw_body")


def calls_refer_to_their_call_objects(apps, schema_editor):
    Call = apps.get_model("calls", "Call")
    CallEvent = apps.get_model("calls", "CallEvent")
    calls = Call.objects.filter(call_object__isnull=False)
    for batch in previous.in_batches(calls, "field_versions"):
        wanted = {
            call.pk: previous.version_body_sha256(call.field_versions, "call_object")
            for call in batch
        }
        found = dict(
            CallEvent.objects.filter(
                call_id__in=list(wanted),
                body_sha256__in=[digest for digest in wanted.values() if digest],
            ).values_list("body_sha256", "pk")
        )
        for call in batch:
            call.call_object_event_id = found.get(wanted[call.pk])
        Call.objects.bulk_update(batch, ["call_object_event"])


def call_objects_from_their_events(apps, schema_editor):
    Call = apps.get_model("calls", "Call")
    CallEvent = apps.get_model("calls", "CallEvent")
    referring = Call.objects.filter(call_object_event__isnull=False)
    for batch in previous.in_batches(referring, "call_object_event"):
        pks = [call.call_object_event_id for call in batch]
        payloads = previous.payloads_by_pk(CallEvent, pks)
        for call in batch:
            call.call_object = payloads[call.call_object_event_id]
        Call.objects.bulk_update(batch, ["call_object"])


def compress_call_object(apps, schema_editor):
    previous.compress_like_0004(schema_editor, "calls_call", "call_object")


class Migration(migrations.Migration):
    dependencies = [("calls", "0005_callevent_payload_from_raw_body")]

    operations = [
        migrations.AddField(
            model_name="call",
            name="call_object_event",
            field=models.ForeignKey(
                blank=True,
                help_text="The event that carried the most advanced full call object received.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="calls.callevent",
            ),
        ),
        migrations.RunPython(calls_refer_to_their_call_objects, call_objects_from_their_events),
        migrations.RunPython(migrations.RunPython.noop, compress_call_object),
        migrations.RemoveField(model_name="call", name="call_object"),
    ]
