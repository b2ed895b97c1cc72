"""What a webhook benchmark run measured (``Tally``), and its report.

bench/webhook_load.py fills a ``Tally`` as its workers post; ``report`` turns it into the
JSON report (``--json``), ``format_text`` into the text one, and ``per_response`` divides a
CPU time (the client's, the server's, PostgreSQL's) by the responses.
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench._common import Target, summarize_ms

Json = dict[str, Any]


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    timeouts: int = 0
    reconnects: int = 0  # a keep-alive-friendly server keeps this at 0
    body_bytes: int = 0


def report(
    args: argparse.Namespace, tally: Tally, elapsed: float, stopped_by: str, run_id: str
) -> Json:
    targets: list[Target] = args.targets
    responses = len(tally.latencies_ns)
    sent = responses + tally.connection_errors + tally.timeouts
    return {
        "target": ", ".join(target.url(args.path) for target in targets),
        "run_id": run_id,
        "concurrency": args.concurrency,
        "requests": sent,
        "responses": responses,
        "warmup": args.warmup,
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(responses / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": summarize_ms(tally.latencies_ns),
        "status_counts": {str(code): n for code, n in sorted(tally.statuses.items())},
        "connection_errors": tally.connection_errors,
        "timeouts": tally.timeouts,
        "reconnects": tally.reconnects,
        "mean_body_kb": round(tally.body_bytes / sent / 1024, 2) if sent else 0.0,
        "stopped_by": stopped_by,
    }


def format_text(report: Json) -> str:
    lat = report["latency_ms"]
    statuses = ", ".join(f"{code}: {n}" for code, n in report["status_counts"].items())
    return "\n".join(
        (
            f"target        {report['target']}  (run {report['run_id']})",
            f"concurrency   {report['concurrency']}",
            f"requests      {report['requests']}  (+{report['warmup']} warmup, not counted)",
            f"elapsed       {report['elapsed_s']:.2f} s  (stopped by {report['stopped_by']})",
            f"throughput    {report['requests_per_s']:.1f} req/s",
            "latency ms    " + "  ".join(f"{k} {_ms(v)}" for k, v in lat.items()),
            f"status        {statuses or '-'}",
            f"errors        connection {report['connection_errors']}, timeout {report['timeouts']}",
            f"reconnects    {report['reconnects']}",
            f"body size     {report['mean_body_kb']:.2f} KB mean",
            f"client        CPU {_ms(report['client_cpu_ms_per_response'])} ms per response",
            *_server_lines(report),
        )
    )


def _server_lines(report: Json) -> list[str]:
    if "server" not in report:
        return []
    cpu = report["server_cpu_ms_per_response"]
    lines = [f"server        {report['server']}, CPU {_ms(cpu)} ms per response"]
    database = report.get("database_cpu_ms_per_response")
    if database is not None:
        lines.append(f"database      PostgreSQL here, CPU {_ms(database)} ms per response")
    return lines


def per_response(before: float | None, after: float | None, tally: Tally) -> float | None:
    if before is None or after is None or not tally.latencies_ns:
        return None
    return round((after - before) * 1000 / len(tally.latencies_ns), 3)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
