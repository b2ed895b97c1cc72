"""Load-test the retellhub webhook endpoint with signed, realistic Retell deliveries.

Usage (against a server that is already running)::

    python bench/webhook_load.py --url http://127.0.0.1:8000 --api-key KEY \\
        --concurrency 16 --requests 3000
    python bench/webhook_load.py --url http://127.0.0.1:8000 --duration 30 --json
    python bench/webhook_load.py --url http://127.0.0.1:8001 --url http://127.0.0.1:8002
    python bench/webhook_load.py --serve uvicorn --concurrency 16   # starts its own server
    python bench/webhook_load.py --url http://127.0.0.1:8080 --payload-key data  # legacy shape

Repeating ``--url`` spreads the connections round-robin over several servers.
``--serve daphne|uvicorn`` starts the project's own server instead (bench/spawn.py: a fresh
SQLite database unless ``$DATABASE_URL`` is set) and adds its CPU per request to the report.

``--api-key`` defaults to ``$RETELL_API_KEY``. Each simulated call yields three
deliveries to ``POST <url>/webhook`` (``--path``) in order: ``call_started``,
``call_ended``, ``call_analyzed``; a worker sends one call's events back to back,
so the calls of different workers interleave. Every call gets a fresh
``call_bench_<run-id>_<n>`` id and every request a fresh ``X-Retell-Signature``.

Bodies (bench/webhook_bodies.py: 5-20 KB once the transcript exists; ``call_started``
is smaller) are rendered before timing starts. The timed loop only splices the call id into a
pre-encoded template and signs it, so the client stays cheap on a small machine.

The run stops after ``--requests`` timed requests (default 3000) or ``--duration``
seconds, whichever comes first, and never later than a hard cap of 10 minutes.
``--warmup`` requests (default 100) go first and are not counted. Throughput is
HTTP responses (any status) per second of the timed phase. Exit status: 0 once a
run completed (non-2xx answers are only reported), 2 if the target is unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/webhook_load.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import HttpConnection, RetellSigner, Target, bounded, parse_target
from bench.cpu import local_postgresql_cpu_seconds
from bench.spawn import SERVER_KINDS, SpawnedServer, spawned_server
from bench.webhook_bodies import (
    CALL_ID_SLOT,
    EVENTS,
    MAX_RUN_ID,
    PAYLOAD_KEYS,
    render_call,
)
from bench.webhook_report import Tally, format_text, per_response, report

HARD_CAP_SECONDS = 600.0
MAX_TEMPLATES = 1000  # distinct call bodies kept in memory (~36 MB); reused beyond that
BACKOFF_SECONDS = 0.05  # after a failed request, so a dead server does not cause a hot loop

# ---------------------------------------------------------------- workload


class CallFeed:
    """Hands out calls: pre-rendered templates, each given a fresh call id."""

    def __init__(self, templates: list[tuple[bytes, ...]], run_id: str) -> None:
        slot = CALL_ID_SLOT.encode()
        self._parts = [[body.split(slot) for body in bodies] for bodies in templates]
        self._prefix = f"call_bench_{run_id}_"
        self.calls = 0

    def next_call(self) -> list[bytes]:
        number = self.calls
        self.calls += 1
        call_id = f"{self._prefix}{number}".encode()
        return [call_id.join(parts) for parts in self._parts[number % len(self._parts)]]


@dataclass
class Budget:
    """Shared stop condition; workers run on one event loop, so no locking is needed."""

    limit: int
    deadline: float  # time.perf_counter() value
    max_failures_in_a_row: int
    issued: int = 0
    failures_in_a_row: int = 0  # requests that got no HTTP response at all

    @property
    def server_gone(self) -> bool:
        return self.failures_in_a_row >= self.max_failures_in_a_row

    def take(self) -> bool:
        if self.issued >= self.limit or self.server_gone or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True

    def record(self, answered: bool) -> None:
        self.failures_in_a_row = 0 if answered else self.failures_in_a_row + 1


class Worker:
    """One persistent connection sending one call's events at a time, in order."""

    def __init__(
        self, conn: HttpConnection, feed: CallFeed, signer: RetellSigner, path: str
    ) -> None:
        self.conn = conn
        self._feed = feed
        self._signer = signer
        self._path = path
        self._pending: deque[bytes] = deque()

    async def run(self, budget: Budget, tally: Tally) -> None:
        while budget.take():
            if not self._pending:
                self._pending.extend(self._feed.next_call())
            budget.record(await self._deliver(self._pending.popleft(), tally))

    async def _deliver(self, body: bytes, tally: Tally) -> bool:
        """Send one webhook; True if the server answered (whatever the status)."""
        tally.body_bytes += len(body)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "retellhub-bench/1",
            "X-Retell-Signature": self._signer.sign(body),
        }
        began = time.perf_counter_ns()
        try:
            response = await self.conn.request("POST", self._path, headers, body)
        except TimeoutError:
            tally.timeouts += 1
        except OSError:
            tally.connection_errors += 1
        else:
            tally.latencies_ns.append(time.perf_counter_ns() - began)
            tally.statuses[response.status] += 1
            return True
        await asyncio.sleep(BACKOFF_SECONDS)
        return False


async def _run_phase(workers: list[Worker], limit: int, deadline: float) -> tuple[Tally, Budget]:
    # A server that died mid-run would otherwise cost a backoff per remaining request.
    give_up_after = max(100, 4 * len(workers))
    tally, budget = Tally(), Budget(limit, deadline, give_up_after)
    await asyncio.gather(*(worker.run(budget, tally) for worker in workers))
    return tally, budget


# ---------------------------------------------------------------- command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Post signed Retell webhooks to a running retellhub and report load figures."
    )
    add = parser.add_argument
    add(
        "--url",
        action="append",
        help="server base URL (plain http; default http://127.0.0.1:8000); repeat it to spread "
        "connections round-robin over several servers",
    )
    add("--path", default="/webhook", help="endpoint path under the URL (default: /webhook)")
    add("--api-key", default=os.environ.get("RETELL_API_KEY"), help="default: $RETELL_API_KEY")
    add("--concurrency", type=bounded(int, 1, 1024), default=16, help="connections (default: 16)")
    add("--requests", type=bounded(int, 1, 10**8), help="timed requests (default: 3000)")
    add("--duration", type=bounded(float, 0.1, HARD_CAP_SECONDS), help="timed seconds")
    add("--warmup", type=bounded(int, 0, 10**6), default=100, help="uncounted (default: 100)")
    add("--timeout", type=bounded(float, 0.1, 300), default=30.0, help="per request, s")
    add(
        "--payload-key",
        choices=PAYLOAD_KEYS,
        default="call",
        help="key carrying the call object: call (current) or data (legacy, what Retell's "
        "demo reads); default: call",
    )
    add("--seed", type=int, default=1, help="payload RNG seed (default: 1)")
    add("--run-id", type=_run_id, help="call id namespace (default: random)")
    add("--json", action="store_true", help="print the report as one JSON object")
    add("--allow-remote", action="store_true", help="allow a target other than loopback")
    add("--serve", choices=SERVER_KINDS, help="start this server (with key_bench) and target it")
    args = parser.parse_args(argv)
    if args.serve:
        args.api_key = "key_bench"
    if not args.api_key:
        parser.error("--api-key is required (or set RETELL_API_KEY)")
    if args.requests is None:
        # A duration alone runs until time is up; templates are recycled, so memory stays flat.
        args.requests = 10**8 if args.duration is not None else 3000
    try:
        args.targets = [
            parse_target(url, allow_remote=args.allow_remote)
            for url in args.url or ["http://127.0.0.1:8000"]
        ]
    except ValueError as exc:
        parser.error(str(exc))
    return args


def _run_id(text: str) -> str:
    # Spliced into JSON bytes unescaped, so only characters JSON never escapes.
    if not re.fullmatch(rf"[A-Za-z0-9_-]{{1,{MAX_RUN_ID}}}", text):
        raise argparse.ArgumentTypeError(f"use 1-{MAX_RUN_ID} letters, digits, '_' or '-'")
    return text


def _render_templates(args: argparse.Namespace, run_id: str) -> list[tuple[bytes, ...]]:
    needed = -(-(args.warmup + args.requests) // len(EVENTS)) + args.concurrency
    rng = random.Random(args.seed)
    return [
        render_call(rng, run_id, payload_key=args.payload_key)
        for _ in range(min(needed, MAX_TEMPLATES))
    ]


def _stop_reason(budget: Budget, duration_deadline: float | None) -> str:
    if budget.server_gone:
        return "errors (server stopped answering)"
    if budget.issued >= budget.limit:
        return "requests"
    if duration_deadline is not None and budget.deadline == duration_deadline:
        return "duration"
    return "hard-cap"


async def _reachable(conn: HttpConnection) -> str | None:
    """None if a TCP connection can be opened, else the reason."""
    try:
        await conn.connect()
    except (OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    conn.close()
    return None


async def _dial_all(args: argparse.Namespace) -> list[HttpConnection]:
    """Connect every worker up front so connecting is not timed; failures redial later."""
    targets: list[Target] = args.targets
    conns = [
        HttpConnection(target.host, target.port, timeout=args.timeout)
        for target in _round_robin(targets, args.concurrency)
    ]
    await asyncio.gather(*(conn.connect() for conn in conns), return_exceptions=True)
    return conns


def _round_robin(targets: list[Target], count: int) -> list[Target]:
    """Connection i goes to target i mod n; a connection keeps its server when it redials."""
    return [targets[index % len(targets)] for index in range(count)]


async def _main(args: argparse.Namespace, server: SpawnedServer | None = None) -> int:
    targets: list[Target] = args.targets
    for target in targets:
        probe = HttpConnection(target.host, target.port, timeout=min(args.timeout, 10.0))
        unreachable = await _reachable(probe)
        if unreachable is not None:
            print(f"error: cannot connect to {target.url('')}: {unreachable}", file=sys.stderr)
            return 2
    run_start = time.perf_counter()
    run_id = args.run_id or uuid.uuid4().hex[:10]
    feed = CallFeed(_render_templates(args, run_id), run_id)
    conns = await _dial_all(args)
    signer = RetellSigner(args.api_key)
    workers = [
        Worker(conn, feed, signer, target.prefix + args.path)
        for conn, target in zip(conns, _round_robin(targets, len(conns)), strict=True)
    ]
    hard_deadline = run_start + HARD_CAP_SECONDS
    try:
        await _run_phase(workers, args.warmup, hard_deadline)
        dials_before = sum(conn.connects for conn in conns)
        cpu_before = server.cpu_seconds() if server else None
        # PostgreSQL's own share, when the spawned server uses one on this machine.
        db_before = local_postgresql_cpu_seconds(os.environ) if server else None
        began, client_cpu_before = time.perf_counter(), time.process_time()
        duration_deadline = None if args.duration is None else began + args.duration
        deadline = min(hard_deadline, duration_deadline or hard_deadline)
        tally, budget = await _run_phase(workers, args.requests, deadline)
        elapsed = time.perf_counter() - began
        client_cpu_after = time.process_time()
        tally.reconnects = sum(conn.connects for conn in conns) - dials_before
    finally:
        for conn in conns:
            conn.close()
    result = report(args, tally, elapsed, _stop_reason(budget, duration_deadline), run_id)
    result["client_cpu_ms_per_response"] = per_response(client_cpu_before, client_cpu_after, tally)
    if server is not None:
        result["server"] = server.kind
        result["server_cpu_ms_per_response"] = per_response(cpu_before, server.cpu_seconds(), tally)
        result["database_cpu_ms_per_response"] = per_response(
            db_before, local_postgresql_cpu_seconds(os.environ), tally
        )
    print(json.dumps(result) if args.json else format_text(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        if not args.serve:
            return asyncio.run(_main(args))
        with spawned_server(args.serve) as server:
            args.targets = [parse_target(server.url)]
            return asyncio.run(_main(args, server=server))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
