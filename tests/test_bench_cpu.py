"""bench/cpu.py: CPU read from /proc for the benchmarks' reports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cpu import (
    descendants,
    local_postgresql_cpu_seconds,
    process_cpu_seconds,
    process_running,
    process_tree_cpu_seconds,
    processes_cpu_seconds,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_processes_by_name_include_this_one_and_grow_with_its_work():
    name = Path("/proc/self/comm").read_text().strip()
    before = processes_cpu_seconds(name)
    own = process_cpu_seconds(os.getpid())
    assert before is not None
    assert own is not None
    assert before >= own - 0.01
    _burn(0.2)  # CPU time, read back from /proc: not a wall-clock figure
    after = processes_cpu_seconds(name)
    assert after is not None
    assert after - before >= 0.15


BURN_THEN_WAIT = (
    "import time\nend = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\ntime.sleep(60)"
)
PARENT_OF_BURNER = (
    f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {BURN_THEN_WAIT!r}])"
)


def test_a_process_tree_counts_its_childrens_cpu():
    parent = subprocess.Popen([sys.executable, "-c", PARENT_OF_BURNER], start_new_session=True)
    try:
        children = 0.0
        for _ in range(600):  # until the child has burnt its CPU time; not a timing
            children = (process_tree_cpu_seconds(parent.pid) or 0.0) - (
                process_cpu_seconds(parent.pid) or 0.0
            )
            if children >= 0.25:
                break
            time.sleep(0.05)
        assert children >= 0.25
        (burner,) = descendants(parent.pid)
        assert b"process_time" in Path(f"/proc/{burner}/cmdline").read_bytes()
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert process_tree_cpu_seconds(parent.pid) is None  # gone
    assert descendants(parent.pid) == []


def test_a_process_runs_until_it_exits_even_before_it_is_reaped():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    assert process_running(child.pid)
    assert child.stdin is not None
    child.stdin.close()  # it exits; not reaped yet, it is a zombie until wait()
    for _ in range(600):  # until it has exited; not a timing
        if not process_running(child.pid):
            break
        time.sleep(0.01)
    assert not process_running(child.pid)
    assert Path(f"/proc/{child.pid}").exists()  # the zombie is still there
    child.wait()
    assert not process_running(child.pid)


def test_a_name_nothing_runs_under_counts_nothing():
    assert processes_cpu_seconds("no-such-process-name") == 0.0


@pytest.mark.parametrize(
    "url",
    [
        "postgres://postgres@127.0.0.1:5432/db",
        "postgresql://u@localhost/db",
        "postgres:///db",  # a Unix socket
    ],
)
def test_postgresql_on_this_machine_is_read(url, monkeypatch):
    seen: list[str] = []

    def counted(name: str) -> float:
        seen.append(name)
        return 1.5

    monkeypatch.setattr("bench.cpu.processes_cpu_seconds", counted)
    assert local_postgresql_cpu_seconds({"DATABASE_URL": url}) == 1.5
    assert seen == ["postgres"]


@pytest.mark.parametrize(
    "url", ["", "sqlite:////tmp/bench.sqlite3", "postgres://u@db.example.com:5432/db"]
)
def test_anything_else_is_not(url):
    assert local_postgresql_cpu_seconds({"DATABASE_URL": url}) is None
