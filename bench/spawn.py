"""A server of the project's own for a benchmark: daphne or ``manage.py serve`` (uvicorn).

``spawned_server(kind)`` migrates a database (``$DATABASE_URL``, else a fresh SQLite file),
starts the server on a free loopback port with ``DEBUG=false`` and ``LOG_LEVEL=WARNING``,
and stops it afterwards. ``cpu_seconds()`` reads the server process's CPU time from /proc,
so a benchmark can report what each request cost the server, not only how long it took.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import process_cpu_seconds
from tests.servers import ROOT, RunningServer, asgi_server_process

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
        """User + system CPU of the server process so far; None where /proc is missing."""
        return process_cpu_seconds(self.running.process.pid)


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
