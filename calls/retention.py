"""Retention: delete old calls, or scrub chosen personal data from them.

Both work in batches, each its own transaction with the calls' rows locked, so a cron run
never holds a long lock and a webhook for the same call waits for the batch rather than
racing it. Both are idempotent: a second run finds nothing left to do.

Scrubbing reaches every copy of a field: the call's column, each stored event, and what
the outbox kept (delivery bodies, recording files). An event stores its delivery once, as
``raw_body`` (its ``payload`` and the call's ``call_object`` are read from there), so the
scrub rewrites ``raw_body``: the same envelope with the fields removed, as compact JSON.
After a scrub ``raw_body`` is therefore no longer the bytes received. ``body_sha256``
stays the hash of those bytes, so a re-delivery of them is still recognised as a
duplicate and adds nothing back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet

from calls.models import Call, CallEvent
from notifications.models import Delivery, Recording
from notifications.services import outbox_scrub_bodies, recording_delete
from retellhub import fastjson

BATCH_SIZE = 500


@dataclass(frozen=True, slots=True)
class ScrubSpec:
    columns: Mapping[str, Any]  # Call column -> its empty value
    drops_key: Callable[[str], bool]  # which top-level keys of a call object to remove
    has_data: Q  # calls that still hold this data
    analysis_keys: tuple[str, ...] = ()  # keys to remove inside call_analysis


SCRUB_SPECS: dict[str, ScrubSpec] = {
    "transcript": ScrubSpec(
        columns={
            "transcript": "",
            "transcript_object": None,
            "transcript_with_tool_calls": None,
            "transcript_event": None,
        },
        drops_key=lambda key: "transcript" in key,
        has_data=~Q(transcript="")
        | Q(transcript_object__isnull=False)
        | Q(transcript_with_tool_calls__isnull=False)
        | Q(transcript_event__isnull=False),
    ),
    "recording": ScrubSpec(
        columns={"recording_url": ""},
        drops_key=lambda key: "recording" in key,
        has_data=~Q(recording_url="") | Q(recording__isnull=False),
    ),
    "numbers": ScrubSpec(
        columns={"from_number": "", "to_number": ""},
        drops_key=lambda key: key in {"from_number", "to_number", "transfer_destination"},
        has_data=~Q(from_number="") | ~Q(to_number=""),
    ),
    "analysis": ScrubSpec(
        columns={"call_summary": "", "custom_analysis_data": None},
        drops_key=lambda key: False,
        has_data=~Q(call_summary="") | Q(custom_analysis_data__isnull=False),
        analysis_keys=("call_summary", "custom_analysis_data"),
    ),
}
SCRUB_FIELDS = tuple(SCRUB_SPECS)


@dataclass(slots=True)
class RetentionReport:
    cutoff: datetime
    calls: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def calls_older_than(*, cutoff: datetime) -> QuerySet[Call]:
    """Calls that started before ``cutoff`` (or, never having started, were stored before)."""
    return Call.objects.filter(
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True, created_at__lt=cutoff)
    )


def _batches(queryset: QuerySet[Call]) -> Iterator[list[int]]:
    ids = list(queryset.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), BATCH_SIZE):
        yield ids[start : start + BATCH_SIZE]


def _locked(ids: Sequence[int]) -> list[Call]:
    return list(Call.objects.select_for_update().filter(pk__in=ids))


def call_prune(*, older_than: timedelta, now: datetime, dry_run: bool) -> RetentionReport:
    """Delete old calls with their events, deliveries and recordings."""
    old = calls_older_than(cutoff=now - older_than)
    report = RetentionReport(cutoff=now - older_than, calls=old.count())
    report.counts = {
        "events": CallEvent.objects.filter(call__in=old).count(),
        "deliveries": Delivery.objects.filter(call__in=old).count(),
        "recordings": Recording.objects.filter(call__in=old).count(),
    }
    if dry_run:
        return report
    for ids in _batches(old):
        with transaction.atomic():
            # Recording files are removed after commit by notifications.signals.
            Call.objects.filter(pk__in=[call.pk for call in _locked(ids)]).delete()
    return report


def _scrub_object(document: Any, specs: Sequence[ScrubSpec]) -> Any:
    if not isinstance(document, dict):
        return document
    kept = {
        key: value for key, value in document.items() if not any(s.drops_key(key) for s in specs)
    }
    analysis = kept.get("call_analysis")
    drop_inside = {key for spec in specs for key in spec.analysis_keys}
    if isinstance(analysis, dict) and drop_inside:
        kept["call_analysis"] = {k: v for k, v in analysis.items() if k not in drop_inside}
    return kept


def _scrubbed_body(event: CallEvent, specs: Sequence[ScrubSpec]) -> str:
    document = fastjson.loads(event.raw_body)
    if event.payload_key:
        # Retell sends the call under "call" (or legacy "data"); the envelope stays.
        document[event.payload_key] = _scrub_object(document[event.payload_key], specs)
    else:  # a socket session: the body is the payload
        document = _scrub_object(document, specs)
    return fastjson.dumps_str(document)


def _scrub_events(*, calls: Sequence[Call], specs: Sequence[ScrubSpec]) -> None:
    events = list(CallEvent.objects.filter(call__in=calls))
    for event in events:
        event.raw_body = _scrubbed_body(event, specs)
    CallEvent.objects.bulk_update(events, ["raw_body"], batch_size=BATCH_SIZE)


def _scrub_calls(*, calls: Sequence[Call], specs: Sequence[ScrubSpec]) -> None:
    # The call object is its event's payload: _scrub_events scrubs it.
    columns = {name: value for spec in specs for name, value in spec.columns.items()}
    for call in calls:
        for name, value in columns.items():
            setattr(call, name, value)
    Call.objects.bulk_update(calls, list(columns), batch_size=BATCH_SIZE)


def call_scrub(
    *, older_than: timedelta, fields: Sequence[str], now: datetime, dry_run: bool
) -> RetentionReport:
    """Blank ``fields`` (keys of ``SCRUB_SPECS``) on old calls that still hold any of them."""
    specs = [SCRUB_SPECS[name] for name in fields]
    has_data = Q()
    for spec in specs:
        has_data |= spec.has_data
    old = calls_older_than(cutoff=now - older_than).filter(has_data).distinct()
    report = RetentionReport(cutoff=now - older_than, calls=old.count())
    if dry_run:
        return report
    for ids in _batches(old):
        with transaction.atomic():
            calls = _locked(ids)
            _scrub_calls(calls=calls, specs=specs)
            _scrub_events(calls=calls, specs=specs)
            outbox_scrub_bodies(calls=calls)
            if "recording" in fields:
                recording_delete(calls=calls)
    return report
