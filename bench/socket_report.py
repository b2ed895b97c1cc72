"""What a call-socket benchmark run measured (``Tally``), and its report.

bench/socket_load.py fills a ``Tally`` as its simulated calls go; ``report`` prints the
latency lines, the early-versus-late turn comparison, interruptions, the fake model's stream
counts and errors, and ``write_samples`` writes every sample as a JSON line (``--samples``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass, field

from bench._common import latency_line, percentile


def ns_to_ms(ns: int) -> float:
    return ns / 1e6


@dataclass
class Tally:
    first_frame_ns: list[int] = field(default_factory=list)
    complete_ns: list[int] = field(default_factory=list)
    ping_ns: list[int] = field(default_factory=list)
    by_turn: dict[int, list[int]] = field(default_factory=dict)
    stale: int = 0
    in_flight: int = 0
    interruptions: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # How late the load client's own loop woke up: its stalls inflate every figure above.
    client_lag_ns: list[int] = field(default_factory=list)
    send_ns: list[int] = field(default_factory=list)
    # (seconds since start, what, milliseconds) for --samples.
    samples: list[tuple[float, str, float]] = field(default_factory=list)


def _turn_median(tally: Tally, *indexes: int) -> float | None:
    values = sorted(v for index in indexes for v in tally.by_turn.get(index, []))
    return ns_to_ms(int(percentile(values, 50))) if values else None


def report(tally: Tally, elapsed: float, stats: dict[str, int], args: argparse.Namespace) -> None:
    print(
        f"\nsocket_load: {args.calls} calls x {args.turns} turns, model TTFT {args.ttft_ms} ms, "
        f"{args.tokens} tokens every {args.token_ms} ms, pause {args.pause_ms} ms, "
        f"interrupt every {args.interrupt_every} turns; {elapsed:.1f} s"
    )
    print(latency_line("request -> first content frame", tally.first_frame_ns))
    print(latency_line("request -> content_complete", tally.complete_ns))
    print(latency_line("server overhead (first - TTFT)", tally.first_frame_ns, args.ttft_ms))
    print(latency_line("ping_pong round trip", tally.ping_ns))
    print(latency_line("load client's own loop lag", tally.client_lag_ns))
    print(latency_line("sending a request (in the above)", tally.send_ns))
    last = args.turns
    windows = {
        f"turn 2 vs turn {last}": ((2,), (last,)),
        f"turns 2-4 vs {last - 2}-{last}": ((2, 3, 4), (last - 2, last - 1, last)),
    }
    for label, (early, late) in windows.items():
        first, later = _turn_median(tally, *early), _turn_median(tally, *late)
        if first is not None and later is not None:
            print(
                f"  first frame p50, {label}: {first:.2f} vs {later:.2f} ms "
                f"(x{later / first:.2f}; overhead {first - args.ttft_ms:.2f} vs "
                f"{later - args.ttft_ms:.2f} ms)"
            )
    print(
        f"  interruptions {tally.interruptions}: stale frames {tally.stale}, "
        f"superseded frames already in flight {tally.in_flight}"
    )
    print(
        f"  model streams: {stats['started']} started, {stats['completed']} completed, "
        f"{stats['client_closed']} closed by the server early, {stats['streaming']} still open"
    )
    errors = sum(tally.errors.values())
    print(f"  errors {errors}" + (f": {dict(tally.errors)}" if errors else ""))


def write_samples(tally: Tally, path: str) -> None:
    with open(path, "w") as out:
        for at, kind, ms in sorted(tally.samples):
            out.write(json.dumps({"t": round(at, 4), "kind": kind, "ms": round(ms, 3)}) + "\n")
