"""Processes of the project's own for a benchmark, started on free loopback ports.

``spawned_server(kind)`` migrates a database (``$DATABASE_URL``, else a fresh SQLite file),
starts the server (daphne or ``manage.py serve``, uvicorn) with ``DEBUG=false`` and
``LOG_LEVEL=WARNING``, and stops it afterwards. ``cpu_seconds()`` reads the CPU time of the
server and its children (the webhook writer) from /proc, so a benchmark can report what
each request cost the server, not only how long it took. ``spawned_fake_model(...)`` runs
bench/fake_model.py as the language model the call sockets talk to, with its ``/stats``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import process_tree_cpu_seconds
from tests.servers import ROOT, RunningServer, asgi_server_process, free_port

SERVER_KINDS = ("daphne", "uvicorn")


@dataclass
class SpawnedServer:
    running: RunningServer
    kind: str

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def ws_url(self) -> str:
        return self.running.ws_url

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server and its child processes (the webhook writer) so
        far; None where /proc is missing."""
        return process_tree_cpu_seconds(self.running.process.pid)


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    workdir = Path(tempfile.mkdtemp(prefix="retellhub-bench-"))
    return {
        "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-0123456789-0123456789-0123456789",
        "RETELL_API_KEY": "key_bench",
        "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{workdir / 'bench.sqlite3'}"),
        "LOG_LEVEL": "WARNING",
        **(extra or {}),
    }


@contextmanager
def spawned_server(kind: str, env: Mapping[str, str] | None = None) -> Iterator[SpawnedServer]:
    full_env = {**os.environ, **bench_env(env)}
    subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=full_env,
        check=True,
    )
    log_path = Path(tempfile.mkdtemp(prefix="retellhub-bench-")) / "server.log"
    with asgi_server_process(full_env, log_path, kind=kind) as running:
        yield SpawnedServer(running=running, kind=kind)


@dataclass
class SpawnedModel:
    """bench/fake_model.py in a process of its own."""

    url: str
    process: subprocess.Popen[bytes]


def model_stats(url: str) -> dict[str, int]:
    """The fake model's counters: streams started, completed, closed early, still open."""
    with urllib.request.urlopen(f"{url}/stats", timeout=5) as response:  # noqa: S310
        return dict(json.loads(response.read()))


def settled_model_stats(url: str) -> dict[str, int]:
    """Stats once no stream is mid-flight (a stream still open after 5 s is a leak)."""
    deadline = time.monotonic() + 5
    stats = model_stats(url)
    while stats["streaming"] and time.monotonic() < deadline:
        time.sleep(0.1)
        stats = model_stats(url)
    return stats


@contextmanager
def spawned_fake_model(*, ttft_ms: float, token_ms: float, tokens: int) -> Iterator[SpawnedModel]:
    port = free_port()
    command = [
        sys.executable, "-m", "bench.fake_model", "--port", str(port),
        "--ttft-ms", str(ttft_ms), "--token-ms", str(token_ms), "--tokens", str(tokens),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT)  # noqa: S603 - our own interpreter and module
    model = SpawnedModel(url=f"http://127.0.0.1:{port}", process=process)
    try:
        _wait_until_answering(model)
        yield model
    finally:
        process.terminate()
        process.wait(10)


def _wait_until_answering(model: SpawnedModel, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            model_stats(model.url)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the fake model at {model.url} did not answer within {timeout}s")
