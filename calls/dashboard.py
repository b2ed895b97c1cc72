"""The admin dashboard's figures and its chart, drawn server-side as SVG (no script, no CDN)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from calls.models import Sentiment
from calls.selectors import call_stats

CHART_DAYS = 14
CHART_WIDTH = 700
CHART_HEIGHT = 220
LABEL_HEIGHT = 20
BAR_GAP = 4
# Sentiments bottom-up, then the calls without one.
SEGMENTS = [
    (Sentiment.POSITIVE.value, "#2e7d32"),
    (Sentiment.NEUTRAL.value, "#9e9e9e"),
    (Sentiment.NEGATIVE.value, "#c62828"),
    (Sentiment.UNKNOWN.value, "#795548"),
    ("No analysis", "#90caf9"),
]


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True, slots=True)
class DayColumn:
    label: str
    label_x: float
    rects: list[Rect]


def _segments(day: dict[str, Any]) -> list[tuple[str, str, int]]:
    rated = sum(day["sentiment"].values())
    counts = [*(day["sentiment"].get(name, 0) for name, _ in SEGMENTS[:-1]), day["calls"] - rated]
    return [(name, colour, n) for (name, colour), n in zip(SEGMENTS, counts, strict=True)]


def chart_columns(per_day: list[dict[str, Any]]) -> list[DayColumn]:
    """Stacked bars, one per day, scaled to the busiest day."""
    plot_height = CHART_HEIGHT - LABEL_HEIGHT
    peak = max((day["calls"] for day in per_day), default=0) or 1
    slot = CHART_WIDTH / max(len(per_day), 1)
    columns = []
    for index, day in enumerate(per_day):
        x, top = index * slot + BAR_GAP / 2, float(plot_height)
        rects = []
        for name, colour, count in _segments(day):
            if count:
                height = count / peak * plot_height
                top -= height
                label = f"{day['date']:%b %d}: {count} {name.lower()}"
                rects.append(Rect(x, top, slot - BAR_GAP, height, colour, label))
        columns.append(DayColumn(f"{day['date']:%d}", x + (slot - BAR_GAP) / 2, rects))
    return columns


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def dashboard_context(*, now: datetime | None = None) -> dict[str, Any]:
    """Today's and this week's (from Monday) figures and the last two weeks' chart."""
    today = _day_start(timezone.localtime(now or timezone.now()))
    tomorrow = today + timedelta(days=1)
    week = today - timedelta(days=today.weekday())
    recent = call_stats(
        started_after=tomorrow - timedelta(days=CHART_DAYS), started_before=tomorrow
    )
    return {
        "periods": [
            ("Today", call_stats(started_after=today, started_before=tomorrow)),
            ("This week", call_stats(started_after=week, started_before=tomorrow)),
        ],
        "chart": {
            "columns": chart_columns(recent["per_day"]),
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
            "label_y": CHART_HEIGHT - 5,
            "legend": SEGMENTS,
        },
    }
