"""Real servers on loopback for tests: the project's ASGI app under daphne (the issue's
server, and ``runserver``'s) or under ``manage.py serve`` (uvicorn, for production)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Message, Request, TextMessage

from bench.cpu import descendants, process_running

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(settings_dict: Mapping[str, Any]) -> str:
    """A DATABASE_URL for the database the test run is using (the test database)."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if user or password else ""
    host = settings_dict.get("HOST") or "localhost"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# How each server is started: the project's ASGI application on a loopback port.
SERVER_KINDS = ("daphne", "uvicorn")


def _server_command(kind: str, port: int) -> list[str]:
    if kind == "daphne":
        app = "retellhub.asgi:application"
        return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    if kind == "uvicorn":
        return [sys.executable, "manage.py", "serve", "--port", str(port)]
    raise ValueError(f"unknown server kind {kind!r}")


def _wait_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/ping", timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /ping in {timeout}s:\n{server.log()}")


@contextmanager
def asgi_server_process(
    env: Mapping[str, str], log_path: Path, *, kind: str = "daphne"
) -> Iterator[RunningServer]:
    """Start the ASGI application under ``kind`` on a free loopback port."""
    port = free_port()
    full_env = {**os.environ, **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and entry points
            _server_command(kind, port),
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process=process, port=port, log_path=log_path)
    try:
        _wait_ready(server, timeout=30)
        yield server
    finally:
        writers = descendants(process.pid)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _wait_exited(writers, timeout=10)


def _wait_exited(pids: list[int], *, timeout: float) -> None:
    """Wait for a stopped server's webhook writers, which leave once it has gone: one still
    closing its database connection would keep the test database from being dropped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process_running(pid) for pid in pids):
        time.sleep(0.02)


def wait_until_sockets_closed(server: RunningServer, timeout: float = 10.0) -> None:
    """Wait until ``server`` has finished with every call socket, its last writes included.

    A socket's session is written after the client has gone; a test that ends first would
    have its database flushed while that write runs (on PostgreSQL the two can deadlock).
    The server's own gauge (``/metrics``, open to loopback callers) drops only after it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=2) as response:  # noqa: S310
            for line in response.read().decode().splitlines():
                if line.startswith("retellhub_llm_sockets_open ") and float(line.split()[1]) == 0:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"call sockets still open after {timeout}s:\n{server.log()[-3000:]}")


def ping_and_hang_up(server: RunningServer, call_id: str) -> None:
    """Open a call socket, read up to the begin message, then send a ``ping_pong`` and a
    close frame (1000) in one write, as a client hanging up right behind a ping does."""
    client = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(client.send(Request(host="127.0.0.1", target=f"/llm-websocket/{call_id}")))
        while not any(frame.get("response_id") == 0 for frame in _frames(sock, client)):
            pass
        ping = json.dumps({"interaction_type": "ping_pong", "timestamp": 1})
        sock.sendall(client.send(Message(data=ping)) + client.send(CloseConnection(code=1000)))
        while sock.recv(65536):
            pass  # until the server closes the connection


def _frames(sock: socket.socket, client: WSConnection) -> list[dict[str, Any]]:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("the server closed the socket before the begin message")
    client.receive_data(data)
    return [json.loads(event.data) for event in client.events() if isinstance(event, TextMessage)]
