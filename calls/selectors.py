"""Reads for the API, the admin and the CSV export. Keyword-only arguments throughout."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    FloatField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from calls.filters import CallEventFilter, CallFilter
from calls.models import Call, CallEvent, CallStatus, Sentiment

# Columns a list row shows; the transcript and the JSON documents stay in the database.
LIST_COLUMNS = (
    "id",
    "call_id",
    "agent_id",
    "agent_name",
    "call_type",
    "direction",
    "from_number",
    "to_number",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "disconnection_reason",
    "user_sentiment",
    "call_successful",
    "combined_cost",
    "last_event",
    "last_event_at",
)
CSV_COLUMNS = (*(name for name in LIST_COLUMNS if name != "id"), "call_summary")
# Rows fetched per round trip by the streaming export; bounds its memory.
EXPORT_CHUNK_SIZE = 2000
# Blank values (e.g. no disconnection reason yet) are counted under this key in stats.
NONE_KEY = "none"


class InvalidFilters(ValueError):
    """The query string did not validate; ``errors`` maps each parameter to messages."""

    def __init__(self, errors: Mapping[str, Sequence[str]]) -> None:
        super().__init__("invalid filters")
        self.errors = {name: list(messages) for name, messages in errors.items()}


def _filtered(filterset_class: Any, *, filters: Mapping[str, Any], queryset: QuerySet[Any]) -> Any:
    filterset = filterset_class(data=filters, queryset=queryset)
    if not filterset.is_valid():
        raise InvalidFilters(filterset.errors)
    return filterset.qs


def _event_count() -> Subquery:
    # A correlated subquery is evaluated only for the rows of the page, where a JOIN +
    # GROUP BY would aggregate every matching call before the LIMIT.
    counts = (
        CallEvent.objects.filter(call=OuterRef("pk"))
        .order_by()
        .values("call")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Subquery(counts)


def call_list(*, filters: Mapping[str, Any]) -> QuerySet[Call]:
    """Calls matching ``filters`` (see calls/filters.py), light columns only, newest first."""
    calls = Call.objects.only(*LIST_COLUMNS).annotate(event_count=Coalesce(_event_count(), 0))
    result: QuerySet[Call] = _filtered(CallFilter, filters=filters, queryset=calls)
    return result


def call_get(*, call_id: str) -> Call:
    """One call with its events (without their raw bodies); raises ``Call.DoesNotExist``."""
    events = CallEvent.objects.defer("raw_body")
    return Call.objects.prefetch_related(Prefetch("events", queryset=events)).get(call_id=call_id)


def calls_with_transcript(*columns: str) -> QuerySet[Call]:
    """Calls loading only ``columns`` and what ``transcript_turns`` reads: the transcript
    held, or the raw body of the event it refers to, in the same query."""
    return Call.objects.select_related("transcript_event").only(
        *columns,
        "transcript_object",
        "transcript_event__raw_body",
        "transcript_event__payload_key",
    )


def call_transcript_get(*, call_id: str) -> Call:
    return calls_with_transcript("call_id", "transcript").get(call_id=call_id)


def transcript_turns(*, call: Call) -> list[dict[str, str]]:
    """The transcript as speaker turns; entries that are not well-formed are skipped."""
    turns = []
    for entry in call.transcript_document("transcript_object") or []:
        if isinstance(entry, dict) and isinstance(entry.get("content"), str):
            turns.append({"role": str(entry.get("role") or ""), "content": entry["content"]})
    return turns


def call_event_list(*, filters: Mapping[str, Any]) -> QuerySet[CallEvent]:
    events = CallEvent.objects.defer("raw_body").annotate(
        retell_call_id=Subquery(_call_id_of_event())
    )
    result: QuerySet[CallEvent] = _filtered(CallEventFilter, filters=filters, queryset=events)
    return result


def _call_id_of_event() -> QuerySet[Call, Any]:
    return Call.objects.filter(pk=OuterRef("call_id")).values("call_id")


def call_event_get(*, event_id: int) -> CallEvent:
    """One event with everything, raw body included; raises ``CallEvent.DoesNotExist``."""
    return CallEvent.objects.annotate(retell_call_id=Subquery(_call_id_of_event())).get(pk=event_id)


def call_export_rows(*, calls: QuerySet[Call]) -> Iterator[tuple[Any, ...]]:
    """``CSV_COLUMNS`` of ``calls``, newest first, fetched in chunks (a server-side cursor on
    PostgreSQL), so an export of any size holds only one chunk in memory."""
    ordered = calls.order_by("-started_at", "-pk").values_list(*CSV_COLUMNS)
    return ordered.iterator(chunk_size=EXPORT_CHUNK_SIZE)


# ---------------------------------------------------------------- stats


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(f) WITHIN GROUP (ORDER BY expr)``."""

    function = "percentile_cont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: Any, fraction: float) -> None:
        # Interpolated into the SQL, so it must be a plain number.
        super().__init__(expression, fraction=repr(float(fraction)))


def _percentiles_in_order(
    values: QuerySet[Any], field: str, fractions: Sequence[float]
) -> list[float | None]:
    """Linear-interpolated percentiles (what percentile_cont computes) for databases without
    it: the database sorts and skips to the one or two rows each percentile needs."""
    ordered = values.order_by(field).values_list(field, flat=True)
    total = ordered.count()
    result: list[float | None] = []
    for fraction in fractions:
        if total == 0:
            result.append(None)
            continue
        rank = fraction * (total - 1)
        low = math.floor(rank)
        pair = [float(v) for v in ordered[low : low + 2]]
        high = pair[1] if len(pair) > 1 else pair[0]
        result.append(pair[0] + (high - pair[0]) * (rank - low))
    return result


def _duration_percentiles(calls: QuerySet[Call], fractions: Sequence[float]) -> list[float | None]:
    timed = calls.filter(duration_ms__gt=0)
    if connection.vendor == "postgresql":
        names = [f"p{index}" for index in range(len(fractions))]
        row = timed.aggregate(
            **{
                name: PercentileCont("duration_ms", fraction)
                for name, fraction in zip(names, fractions, strict=True)
            }
        )
        return [row[name] for name in names]
    return _percentiles_in_order(timed, "duration_ms", fractions)


def _counts_by(calls: QuerySet[Call], field: str) -> dict[str, int]:
    rows = calls.order_by().values(field).annotate(n=Count("pk")).order_by("-n", field)
    return {(row[field] or NONE_KEY): row["n"] for row in rows}


def _per_day(calls: QuerySet[Call], *, first: date, last: date) -> list[dict[str, Any]]:
    sentiments = [choice.value for choice in Sentiment]
    rows = (
        calls.annotate(day=TruncDate("started_at", tzinfo=timezone.get_current_timezone()))
        .order_by()
        .values("day")
        .annotate(
            calls=Count("pk"),
            **{name: Count("pk", filter=Q(user_sentiment=name)) for name in sentiments},
        )
    )
    by_day = {row["day"]: row for row in rows}
    series = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        row = by_day.get(day, {})
        series.append(
            {
                "date": day,
                "calls": row.get("calls", 0),
                "sentiment": {name: row.get(name, 0) for name in sentiments},
            }
        )
    return series


def _money(value: Decimal | float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def call_stats(
    *, started_after: datetime, started_before: datetime, agent_id: str = ""
) -> dict[str, Any]:
    """Figures for calls started in [started_after, started_before), optionally one agent's.

    Every number is aggregated by the database; Python only shapes the result and fills
    the days without calls in the per-day series.
    """
    calls = Call.objects.filter(started_at__gte=started_after, started_at__lt=started_before)
    if agent_id:
        calls = calls.filter(agent_id=agent_id)
    totals = calls.aggregate(
        total=Count("pk"),
        successful=Count("pk", filter=Q(call_successful=True)),
        rated=Count("pk", filter=Q(call_successful__isnull=False)),
        avg_duration=Avg("duration_ms", filter=Q(duration_ms__gt=0)),
        total_cost=Sum("combined_cost"),
        avg_cost=Avg("combined_cost"),
    )
    p50, p90 = _duration_percentiles(calls, (0.5, 0.9))
    local = timezone.localtime
    return {
        "started_after": started_after,
        "started_before": started_before,
        "agent": agent_id or None,
        "total": totals["total"],
        "by_status": _counts_by(calls, "status"),
        "by_disconnection_reason": _counts_by(calls, "disconnection_reason"),
        "by_sentiment": _counts_by(calls, "user_sentiment"),
        "successful": totals["successful"],
        "rated": totals["rated"],
        "success_rate": (
            round(totals["successful"] / totals["rated"], 4) if totals["rated"] else None
        ),
        "duration_ms": {
            "avg": _rounded(totals["avg_duration"]),
            "p50": _rounded(p50),
            "p90": _rounded(p90),
        },
        "cost_cents": {
            "total": _money(totals["total_cost"]),
            "avg": _money(totals["avg_cost"]),
        },
        "per_day": _per_day(
            calls,
            first=local(started_after).date(),
            last=local(started_before - timedelta(microseconds=1)).date(),
        ),
    }


# ---------------------------------------------------------------- live monitor (/live/)

# Columns the live monitor shows (calls/realtime.py::call_state).
LIVE_COLUMNS = (
    "id",
    "call_id",
    "status",
    "agent_id",
    "agent_name",
    "direction",
    "started_at",
    "ended_at",
    "duration_ms",
    "created_at",
    "updated_at",
)  # and the transcript (calls_with_transcript)
LIVE_ONGOING_LIMIT = 50
LIVE_FINISHED_LIMIT = 10
# A call whose call_ended never came would otherwise stay "in progress" for ever.
LIVE_STALE_AFTER = timedelta(hours=6)
LIVE_FINISHED_STATUSES = (CallStatus.ENDED, CallStatus.NOT_CONNECTED, CallStatus.ERROR)


def live_calls(*, now: datetime | None = None) -> list[Call]:
    """Calls in progress (heard of recently) and the last finished ones, newest first.

    Newest by primary key: a backwards index scan that stops after the limit, where the
    finished calls (nearly all rows) would have to be sorted by any other column.
    """
    recent = (now or timezone.now()) - LIVE_STALE_AFTER
    calls = calls_with_transcript(*LIVE_COLUMNS).order_by("-pk")
    ongoing = calls.exclude(status__in=LIVE_FINISHED_STATUSES).filter(updated_at__gte=recent)
    finished = calls.filter(status__in=LIVE_FINISHED_STATUSES)
    return [*ongoing[:LIVE_ONGOING_LIMIT], *finished[:LIVE_FINISHED_LIMIT]]


def live_call_get(*, call_id: str) -> Call | None:
    return calls_with_transcript(*LIVE_COLUMNS).filter(call_id=call_id).first()


def live_calls_by_pk(*, pks: list[int]) -> list[Call]:
    """The calls with these primary keys that still exist, as the monitor shows them."""
    return list(calls_with_transcript(*LIVE_COLUMNS).filter(pk__in=pks).order_by("pk"))
