"""The call's structured transcript becomes a reference to the event that carried it.

``transcript_object`` and ``transcript_with_tool_calls`` (every word with its timings) are
most of a delivery's bytes, and the call copied them on each delivery that carried them,
though the same documents are stored in that event's raw body. The call now refers to the
event instead (``Call.transcript_event``), as migration 0006 did for the call object; the
two columns keep only a transcript no event carried (the call socket's live one).

Forwards: the merge records the transcript's version in ``field_versions`` as
``[rank, turns, body_sha256]`` (calls/merge.py), so the event is the call's event with that
body hash. A call is converted only when that event's call object holds exactly the
documents the call holds; any other call keeps them inline, which reads the same
(``Call.transcript_document``). Backwards copies the documents back from the events.
"""

import importlib

import django.db.models.deletion
from django.db import migrations, models

_0005 = importlib.import_module("calls.migrations.0005_callevent_payload_from_raw_body")
DOCUMENTS = ("transcript_object", "transcript_with_tool_calls")


def _documents(payload):
    payload = payload if isinstance(payload, dict) else {}
    return {
        name: value if isinstance(value := payload.get(name), list) else None
        for name in DOCUMENTS
    }


def calls_refer_to_their_transcripts(apps, schema_editor):
    Call = apps.get_model("calls", "Call")
    CallEvent = apps.get_model("calls", "CallEvent")
    holding = Call.objects.filter(transcript_object__isnull=False)
    for batch in _0005.in_batches(holding, "field_versions", *DOCUMENTS):
        wanted = {
            call.pk: _0005.version_body_sha256(call.field_versions, "transcript_object")
            for call in batch
        }
        events = CallEvent.objects.filter(
            call_id__in=list(wanted), body_sha256__in=[sha for sha in wanted.values() if sha]
        ).values_list("call_id", "body_sha256", "pk", "raw_body", "payload_key")
        found = {(call_pk, sha): (pk, body, key) for call_pk, sha, pk, body, key in events}
        converted = []
        for call in batch:
            event = found.get((call.pk, wanted[call.pk]))
            held = {name: getattr(call, name) for name in DOCUMENTS}
            if event is None or _documents(_0005.payload_of(event[1], event[2])) != held:
                continue
            call.transcript_event_id = event[0]
            call.transcript_object = call.transcript_with_tool_calls = None
            converted.append(call)
        Call.objects.bulk_update(converted, ["transcript_event", *DOCUMENTS])


def transcripts_from_their_events(apps, schema_editor):
    Call = apps.get_model("calls", "Call")
    CallEvent = apps.get_model("calls", "CallEvent")
    referring = Call.objects.filter(transcript_event__isnull=False)
    for batch in _0005.in_batches(referring, "transcript_event"):
        payloads = _0005.payloads_by_pk(CallEvent, [call.transcript_event_id for call in batch])
        for call in batch:
            for name, value in _documents(payloads[call.transcript_event_id]).items():
                setattr(call, name, value)
            call.transcript_event_id = None
        Call.objects.bulk_update(batch, ["transcript_event", *DOCUMENTS])


class Migration(migrations.Migration):
    dependencies = [("calls", "0008_json_as_text")]

    operations = [
        migrations.AddField(
            model_name="call",
            name="transcript_event",
            field=models.ForeignKey(
                blank=True,
                help_text="The event whose call object carried the structured transcript.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="calls.callevent",
            ),
        ),
        migrations.RunPython(calls_refer_to_their_transcripts, transcripts_from_their_events),
    ]
