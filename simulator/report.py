"""What the simulator prints: a call's timeline, violations, latency figures, JSON."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, TextIO

from bench._common import latency_line, summarize_ms
from simulator.conformance import RULE_TEXT
from simulator.run import CallResult
from simulator.timeline import Moment, Violation

BAR_WIDTH = 30


# --- one call -----------------------------------------------------------------------------


def format_moment(moment: Moment) -> str:
    head = f"{moment.at_s:8.3f}s  {moment.actor:<7}"
    if moment.actor == "agent":
        detail = moment.detail
        timing = _answer_timing(detail.get("first_ms"), detail.get("complete_ms"))
        note = f"  [{detail['note']}]" if detail.get("note") else ""
        return f"{head}  {detail['label']:<6} {moment.text!r}  {timing}{note}"
    if moment.actor == "caller":
        return f"{head}  {'':<6} {moment.text!r}"
    return f"{head}  {moment.text}"


def _answer_timing(first_ms: float | None, complete_ms: float | None) -> str:
    first = "-" if first_ms is None else f"{first_ms:.1f}"
    complete = "-" if complete_ms is None else f"{complete_ms:.1f}"
    return f"(first frame {first} ms, complete {complete} ms)"


def format_violations(violations: Sequence[Violation]) -> str:
    if not violations:
        return "conformance: no violations"
    lines = [f"conformance: {len(violations)} violation(s)"]
    for rule, count in Counter(v.rule for v in violations).items():
        example = next(v for v in violations if v.rule == rule)
        times = f" x{count}" if count > 1 else ""
        lines.append(f"  - {rule}{times}: {RULE_TEXT[rule]}")
        lines.append(f"      first at {example.at_s:.3f}s: {example.detail}")
    return "\n".join(lines)


def format_call(result: CallResult, *, check: bool) -> str:
    answered = [a for a in result.answers if a.response_id > 0]
    statuses = ", ".join(f"{d.label} {d.status or '-'}" for d in result.deliveries)
    lines = [
        f"call {result.call_id} ({result.scenario.name}): ended with {result.ending}"
        + (f" -> {result.transfer_destination}" if result.transfer_destination else ""),
        f"  answers {len(answered)}, interruptions {result.interruptions}, "
        f"superseded frames in flight {result.in_flight}, pings {len(result.ping_round_trips_ns)}",
        f"  webhooks {statuses}",
        *(f"  note: {note}" for note in result.notes),
    ]
    if check or result.timeline.violations:
        lines.append(format_violations(result.timeline.violations))
    return "\n".join(lines)


# --- many calls ---------------------------------------------------------------------------


def _answers_ns(results: Iterable[CallResult], *, begin: bool, measure: str) -> list[int]:
    """``measure`` (first_ms / complete_ms) of the begin messages, or of the other answers."""
    values = (
        getattr(answer, measure)
        for result in results
        for answer in result.answers
        if (answer.response_id == 0) == begin
    )
    return [int(value * 1e6) for value in values if value is not None]


def _webhooks_ns(results: Iterable[CallResult]) -> list[int]:
    return [d.latency_ns for r in results for d in r.deliveries if d.latency_ns is not None]


def _pings_ns(results: Iterable[CallResult]) -> list[int]:
    return [rtt for r in results for rtt in r.ping_round_trips_ns]


FIGURES: tuple[tuple[str, Callable[[Sequence[CallResult]], list[int]]], ...] = (
    ("webhook round trip", _webhooks_ns),
    ("socket open -> begin message", partial(_answers_ns, begin=True, measure="complete_ms")),
    ("request -> first content frame", partial(_answers_ns, begin=False, measure="first_ms")),
    ("request -> content_complete", partial(_answers_ns, begin=False, measure="complete_ms")),
    ("ping_pong round trip", _pings_ns),
)


def format_many(results: Sequence[CallResult], *, elapsed: float, concurrency: int) -> str:
    violations = [v for r in results for v in r.timeline.violations]
    endings = Counter(r.ending for r in results)
    lines = [
        f"simulate_call: {len(results)} calls ({results[0].scenario.name}), "
        f"{concurrency} at once; {elapsed:.1f} s",
        *(latency_line(name, figure(results)) for name, figure in FIGURES),
        f"  interruptions {sum(r.interruptions for r in results)}, superseded frames in flight "
        f"{sum(r.in_flight for r in results)}",
        "  endings " + ", ".join(f"{name} {count}" for name, count in endings.most_common()),
        format_violations(violations),
    ]
    return "\n".join(lines)


# --- JSON ---------------------------------------------------------------------------------


def call_json(result: CallResult) -> dict[str, Any]:
    return {
        "call_id": result.call_id,
        "scenario": result.scenario.name,
        "ending": result.ending,
        "transfer_destination": result.transfer_destination,
        "notes": result.notes,
        "violations": [
            {"rule": str(v.rule), "detail": v.detail, "at_s": v.at_s}
            for v in result.timeline.violations
        ],
        "webhooks": [_delivery_json(d) for d in result.deliveries],
        "probes": [_delivery_json(d) for d in result.probes],
        "answers": [
            {
                "response_id": a.response_id,
                "kind": a.kind,
                "text": a.text,
                "frames": a.frames,
                "first_frame_ms": a.first_ms,
                "complete_ms": a.complete_ms,
                "actions": a.actions,
                "superseded": a.superseded,
            }
            for a in result.answers
        ],
        "ping_round_trips_ms": [round(rtt / 1e6, 3) for rtt in result.ping_round_trips_ns],
        "timeline": [
            {"at_s": m.at_s, "actor": m.actor, "text": m.text} for m in result.timeline.moments
        ],
    }


def _delivery_json(delivery: Any) -> dict[str, Any]:
    latency = delivery.latency_ns
    return {
        "label": delivery.label,
        "status": delivery.status,
        "ms": None if latency is None else round(latency / 1e6, 3),
        "error": delivery.error,
    }


def report_json(results: Sequence[CallResult], *, elapsed: float) -> dict[str, Any]:
    violations = Counter(str(v.rule) for r in results for v in r.timeline.violations)
    return {
        "calls": len(results),
        "elapsed_s": round(elapsed, 3),
        "latency_ms": {name: summarize_ms(figure(results)) for name, figure in FIGURES},
        "violations_by_rule": dict(violations),
        "results": [call_json(result) for result in results],
    }


# --- progress -----------------------------------------------------------------------------


class ProgressBar:
    """``[#####-----] 12/20 calls, 1 with violations`` redrawn in place on a terminal."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total

    def __call__(self, finished: Sequence[CallResult]) -> None:
        done = len(finished)
        filled = BAR_WIDTH * done // self.total
        bad = sum(1 for result in finished if result.timeline.violations)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total} calls, {bad} with violations")
        if done == self.total:
            self.stream.write("\n")
        self.stream.flush()
