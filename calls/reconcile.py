"""Reconciliation with Retell's API: heal calls whose webhooks never arrived.

Retell gives up on a delivery after a few retries (retell-protocol.md A.2), so an outage
longer than that leaves calls missing or half-known. ``manage.py sync_calls`` lists the
calls Retell has (``POST /v3/list-calls`` through retell-sdk, cursor-paginated) and merges
each one through ``call_event_record``, the webhook's own service, as a ``retell_api``
event. The merge ranks that event between ``call_ended`` and ``call_analyzed``
(calls/merge.py), so a snapshot fills what is missing without overriding the webhooks'
final analysis, and re-running the sync adds nothing (same snapshot, same body hash).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from retell import APIError, Retell

from calls import signing
from calls.models import Call, EventSource
from calls.payloads import PayloadError, parse_webhook
from calls.services import call_event_record

API_SNAPSHOT_EVENT = "retell_api"
# A snapshot of a call still in progress would rank above its later webhooks (merge rank
# 45 > call_ended's 40), so only finished calls are merged; their webhooks cover the rest.
FINISHED_STATUSES = frozenset({"ended", "error", "not_connected"})
# Columns that record the merge itself rather than what is known about the call: a change
# there alone is not a gap.
BOOKKEEPING_FIELDS = frozenset(
    {
        "id",
        "field_versions",
        "updated_at",
        "last_event_at",
        "created_at",
        "call_object_event_id",
        "last_event",
    }
)


class ReconcileError(Exception):
    """Retell's API failed or answered something unusable; safe to show to the operator."""


@dataclass(frozen=True, slots=True)
class CallGap:
    call_id: str
    kind: str  # "missing" (no such call here) or "stale" (fields changed)
    fields: list[str]


@dataclass(slots=True)
class SyncReport:
    listed: int = 0
    in_step: int = 0
    in_progress: int = 0
    gaps: list[CallGap] = field(default_factory=list)


# --- Reading Retell's API ---------------------------------------------------------------------


def retell_client(*, api_key: str, base_url: str, max_retries: int, timeout: float) -> Retell:
    return Retell(
        api_key=api_key, base_url=base_url or None, max_retries=max_retries, timeout=timeout
    )


def _list_page(
    client: Retell, *, since_ms: int, page_size: int, pagination_key: str | None, with_total: bool
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "filter_criteria": {"start_timestamp": {"op": "ge", "type": "number", "value": since_ms}},
        "limit": page_size,
        "sort_order": "ascending",
    }
    if pagination_key:
        options["pagination_key"] = pagination_key
    if with_total:
        options["include_total"] = True
    try:
        # The raw JSON, not the SDK's models: the stored evidence is what Retell sent, and
        # the models accept malformed pages without complaint.
        document = client.call.with_raw_response.list(**options).json()
    except APIError as exc:
        raise ReconcileError(f"Retell's API failed: {exc}") from exc
    except ValueError as exc:
        raise ReconcileError("Retell's API answered something that is not JSON.") from exc
    return _checked_page(document)


def _checked_page(document: object) -> dict[str, Any]:
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise ReconcileError("Retell's API answered a page without an 'items' list.")
    if not all(isinstance(item, dict) for item in document["items"]):
        raise ReconcileError("Retell's API answered a page whose items are not call objects.")
    if document.get("has_more") and not isinstance(document.get("pagination_key"), str):
        raise ReconcileError("Retell's API says there is more but gave no pagination_key.")
    return document


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[dict[str, Any]]
    total: int | None


def retell_call_pages(*, client: Retell, since_ms: int, page_size: int) -> Iterator[CallPage]:
    """Every call started at or after ``since_ms``, a page at a time, oldest first."""
    key: str | None = None
    seen_keys: set[str] = set()
    while True:
        page = _list_page(
            client, since_ms=since_ms, page_size=page_size, pagination_key=key, with_total=not key
        )
        total = page.get("total")
        yield CallPage(calls=page["items"], total=total if isinstance(total, int) else None)
        if not page.get("has_more"):
            return
        key = page["pagination_key"]
        if key in seen_keys:
            raise ReconcileError("Retell's API repeated a pagination_key; stopping.")
        seen_keys.add(key)


# --- Merging one snapshot ---------------------------------------------------------------------


def snapshot_body(call: dict[str, Any]) -> bytes:
    """The stored body: sorted keys, so an unchanged call hashes the same on every sync.

    Shaped like a webhook's (the call object under "call"), so the stored event's payload
    is read from it the same way."""
    document = {"event": API_SNAPSHOT_EVENT, "call": call}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )


def _columns(call: Call | None) -> dict[str, Any]:
    if call is None:
        return {}
    # The transcript as the call reads it: a snapshot carrying the same one moves only the
    # reference (Call.transcript_event), which is not a gap.
    values = call.column_values()
    return {name: value for name, value in values.items() if name not in BOOKKEEPING_FIELDS}


def _gap(call_id: str, before: dict[str, Any], after: dict[str, Any]) -> CallGap | None:
    if not before:
        return CallGap(call_id=call_id, kind="missing", fields=[])
    changed = sorted(name for name, value in after.items() if before.get(name) != value)
    return CallGap(call_id=call_id, kind="stale", fields=changed) if changed else None


@transaction.atomic
def call_snapshot_reconcile(
    *, call: dict[str, Any], key_fingerprint: str, dry_run: bool
) -> CallGap | None:
    """Merge one call object from Retell's API; return what it healed (None: nothing).

    A dry run does the same work and rolls it back, so it reports exactly the gaps a real
    run would fill.
    """
    try:
        event = parse_webhook(snapshot_body(call))
    except PayloadError as exc:
        raise ReconcileError(f"Retell's API listed an unusable call: {exc}") from exc
    before = _columns(Call.objects.filter(call_id=event.call_id).first())
    outcome = call_event_record(
        event=event,
        raw_body=snapshot_body(call),
        source_ip=None,
        key_fingerprint=key_fingerprint,
        source=EventSource.RETELL_API,
    )
    outcome.call.refresh_from_db()
    gap = _gap(event.call_id, before, _columns(outcome.call))
    if dry_run:
        transaction.set_rollback(True)
    return gap


def calls_sync(
    *,
    client: Retell,
    api_key: str,
    since_ms: int,
    page_size: int,
    dry_run: bool,
    progress: Callable[[int, int | None], None] | None = None,
) -> SyncReport:
    """List Retell's calls since ``since_ms`` and merge the finished ones.

    Each call commits on its own, so an API failure half way keeps what was healed and a
    re-run continues idempotently. ``progress(done, total)`` is called after each page.
    """
    report = SyncReport()
    fingerprint = signing.key_fingerprint(api_key)
    total: int | None = None
    for page in retell_call_pages(client=client, since_ms=since_ms, page_size=page_size):
        total = page.total if page.total is not None else total
        for call in page.calls:
            _sync_one(report, call=call, key_fingerprint=fingerprint, dry_run=dry_run)
        if progress is not None:
            progress(report.listed, total)
    return report


def _sync_one(
    report: SyncReport, *, call: dict[str, Any], key_fingerprint: str, dry_run: bool
) -> None:
    report.listed += 1
    if call.get("call_status") not in FINISHED_STATUSES:
        report.in_progress += 1
        return
    gap = call_snapshot_reconcile(call=call, key_fingerprint=key_fingerprint, dry_run=dry_run)
    if gap is None:
        report.in_step += 1
    else:
        report.gaps.append(gap)
