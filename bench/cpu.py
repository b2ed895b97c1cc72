"""Who used the machine's CPU during a benchmark, read from Linux's /proc.

On the shared 2-core benchmark machine every latency figure depends on what else runs, so
the benchmarks report their own processes' CPU and what the rest of the machine took.
Where /proc is missing the figures are absent (None) or zero.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of process ``pid`` so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far (Linux /proc; zeros elsewhere): ours, and the whole machine's."""

    server: float
    model: float
    client: float
    machine_busy: float
    machine_total: float


def _process_cpu(pid: int) -> float:
    return process_cpu_seconds(pid) or 0.0


def _machine_cpu() -> tuple[float, float]:
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - ticks[3] - ticks[4]) / hz, sum(ticks) / hz


def cpu_snapshot(server_pid: int, model_pid: int) -> CpuSnapshot:
    busy, total = _machine_cpu()
    return CpuSnapshot(
        _process_cpu(server_pid), _process_cpu(model_pid), time.process_time(), busy, total
    )


def print_cpu(before: CpuSnapshot, after: CpuSnapshot) -> None:
    """Our processes' CPU, and what everything else on the machine took meanwhile: on a
    shared machine other jobs' load shows up in every latency figure above."""
    server = after.server - before.server
    model = after.model - before.model
    client = after.client - before.client
    total = after.machine_total - before.machine_total
    others = (after.machine_busy - before.machine_busy) - server - model - client
    cores = os.cpu_count() or 1
    if total > 0:
        print(
            f"  CPU seconds: server {server:.1f}, fake model {model:.1f}, load client "
            f"{client:.1f}; other processes {max(others, 0):.1f} "
            f"({100 * max(others, 0) / total:.0f}% of {cores} cores)"
        )
