"""Who used the machine's CPU during a benchmark, read from Linux's /proc.

On the shared 2-core benchmark machine every latency figure depends on what else runs, so
the benchmarks report their own processes' CPU and what the rest of the machine took.
Where /proc is missing the figures are absent (None) or zero.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from calls.net import is_loopback


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of process ``pid`` so far; None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_running(pid: int) -> bool:
    """Whether process ``pid`` still runs: False once it is gone or has exited (a zombie,
    waiting only for its parent to reap it), and where /proc is missing."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def process_tree_cpu_seconds(pid: int) -> float | None:
    """``process_cpu_seconds`` of ``pid`` and every process descended from it: a server
    with its webhook writers (calls/writer_process.py), or with ``--workers``. Children that
    ended meanwhile are not counted."""
    own = process_cpu_seconds(pid)
    if own is None:
        return None
    return own + sum(process_cpu_seconds(child) or 0.0 for child in descendants(pid))


def descendants(pid: int) -> list[int]:
    """The processes descended from ``pid`` (children, theirs, ...); [] once it is gone."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children.extend(int(child) for child in task.read_text().split())
        except OSError:
            continue  # the thread ended while we looked
    return [*children, *(later for child in children for later in descendants(child))]


def processes_cpu_seconds(name: str) -> float | None:
    """User + system CPU so far of every running process named ``name`` (its ``comm``, as
    ``ps`` shows it), whoever owns it; None where /proc is missing.

    For a database server on this machine, such as ``postgres``: the CPU a benchmark's
    queries cost it. Processes that ended meanwhile are not counted, which is right for
    PostgreSQL while the benchmarked server's pool keeps its connections open.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
        except OSError:
            continue  # it ended while we looked
        total += process_cpu_seconds(int(entry.name)) or 0.0
    return total


def local_postgresql_cpu_seconds(environ: Mapping[str, str]) -> float | None:
    """PostgreSQL's CPU so far when ``DATABASE_URL`` in ``environ`` names one on this
    machine (loopback or a Unix socket); None otherwise."""
    parts = urlsplit(environ.get("DATABASE_URL", ""))
    local = parts.hostname is None or is_loopback(parts.hostname)
    if parts.scheme not in {"postgres", "postgresql"} or not local:
        return None
    return processes_cpu_seconds("postgres")


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far (Linux /proc; zeros elsewhere): ours, and the whole machine's."""

    server: float
    model: float
    client: float
    machine_busy: float
    machine_total: float


def _process_cpu(pid: int) -> float:
    return process_tree_cpu_seconds(pid) or 0.0


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
