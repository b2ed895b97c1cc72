"""Load-test the retellhub webhook endpoint with signed, realistic Retell deliveries.

Usage (against a server that is already running)::

    python bench/webhook_load.py --url http://127.0.0.1:8000 --api-key KEY \\
        --concurrency 16 --requests 3000
    python bench/webhook_load.py --url http://127.0.0.1:8000 --duration 30 --json
    python bench/webhook_load.py --url http://127.0.0.1:8001 --url http://127.0.0.1:8002
    python bench/webhook_load.py --serve uvicorn --concurrency 16   # starts its own server

Repeating ``--url`` spreads the connections round-robin over several servers.
``--serve daphne|uvicorn`` starts the project's own server instead (bench/spawn.py: a fresh
SQLite database unless ``$DATABASE_URL`` is set) and adds its CPU per request to the report.

``--api-key`` defaults to ``$RETELL_API_KEY``. Each simulated call yields three
deliveries to ``POST <url>/webhook`` (``--path``) in order: ``call_started``,
``call_ended``, ``call_analyzed``; a worker sends one call's events back to back,
so the calls of different workers interleave. Every call gets a fresh
``call_bench_<run-id>_<n>`` id and every request a fresh ``X-Retell-Signature``.

Bodies (5-20 KB once the transcript exists; ``call_started`` is smaller) are
rendered before timing starts. The timed loop only splices the call id into a
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
import hashlib
import itertools
import json
import os
import random
import re
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as `python bench/webhook_load.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import HttpConnection, RetellSigner, Target, parse_target, summarize_ms
from bench.calldata import (
    CDN,
    call_cost,
    encode_json,
    phone_number,
    transcript_text,
    utterance,
)
from bench.spawn import SERVER_KINDS, SpawnedServer, spawned_server

HARD_CAP_SECONDS = 600.0
MAX_TEMPLATES = 1000  # distinct call bodies kept in memory (~36 MB); reused beyond that
CALL_ID_SLOT = "@@CALL_ID@@"
EVENTS = ("call_started", "call_ended", "call_analyzed")
MAX_RUN_ID = 24
MAX_CALL_ID = len("call_bench__") + MAX_RUN_ID + 9  # 9 digits: > 10**8 requests / 3
MIN_BODY_BYTES = 5_300  # > 5 KiB
# Templates hold 3 slots per body; <= 20 kB once they are replaced by the longest ids.
MAX_TEMPLATE_BYTES = 20_000 - 3 * (MAX_CALL_ID - len(CALL_ID_SLOT))
BACKOFF_SECONDS = 0.05  # after a failed request, so a dead server does not cause a hot loop

Json = dict[str, Any]

# ---------------------------------------------------------------- payloads

CUSTOMERS = (
    "José García", "Zoë Müller", "李雷", "Amélie Dubois", "Søren Kierkegaard",
    "Małgorzata Nowak", "Nguyễn Văn An", "Björn Ångström", "Priya Raman", "Олег Петров",
    "Chloé Martin", "Ahmed Al-Farsi", "Siobhán O'Brien", "韩梅梅", "John Smith",
)  # fmt: skip
AGENTS = (
    ("Front Desk Receptionist", "Sunrise Dental"),
    ("Appointment Scheduler", "Lakeside Physiotherapy"),
    ("Order Status Assistant", "Café Olé Roasters"),
    ("Insurance Intake", "Northwind Mutual"),
)
# Ordered (agent, user) exchanges; long calls loop over all but the greeting.
DIALOGUE = (
    (
        "Thanks for calling {org}, this is the virtual assistant. How can I help you today?",
        "Hi, yes, I'd like to book an appointment, my name is {name}.",
    ),
    (
        "Sure, {name}, I can help with that. Could you confirm your date of birth for me?",
        "It's March fourteenth, nineteen eighty-seven.",
    ),
    (
        "Thank you. I see an opening on {day} at {hour}. Would that work for you?",
        "Hmm, {day} is a bit tricky for me, do you have anything in the afternoon?",
    ),
    (
        "I understand. Let me check what we have available later in the week.",
        "Sorry, could you repeat that? The line cut out for a second.",
    ),
    (
        "Of course. I have {day} at {hour} or Friday morning. Which do you prefer?",
        "The first one, please. Could you also check whether my insurance is on file?",
    ),
    (
        "Your insurance is on file. Just to confirm, is this number the best way to reach you?",
        "Yes, that's right, this number is fine.",
    ),
    (
        "Great, I've booked that for you. You'll get a text confirmation shortly. "
        "Is there anything else I can help you with, {name}?",
        "No, that's everything. Thanks, bye!",
    ),
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
HOURS = ("9:30 AM", "11 AM", "1:15 PM", "3:45 PM", "4:30 PM")
SENTIMENTS = ("Positive", "Negative", "Neutral", "Unknown")


def _dialogue(rng: random.Random, fill: dict[str, str]) -> Iterator[Json]:
    """Endless alternating agent/user turns with word-level timings."""
    clock = rng.uniform(0.3, 1.2)
    for index in itertools.count():
        exchange = DIALOGUE[0] if index == 0 else DIALOGUE[1 + (index - 1) % (len(DIALOGUE) - 1)]
        for role, line in zip(("agent", "user"), exchange, strict=True):
            turn = utterance(rng, role, line.format(**fill), clock)
            yield turn
            clock = turn["words"][-1]["end"] + rng.uniform(0.4, 1.5)


def _turn_cost(turn: Json) -> int:
    """Bytes a turn adds: object entry + comma, plus its text line ("\n" escapes to 2 bytes)."""
    return _json_size(turn) + 1 + len(f"{turn['role']}: {turn['content']}".encode()) + 2


def _json_size(value: object) -> int:
    return len(encode_json(value))


def _latency_block(rng: random.Random, base_ms: float, turns: int) -> Json:
    samples = sorted(base_ms * rng.lognormvariate(0, 0.35) for _ in range(max(turns, 1)))
    return {
        "p50": round(samples[len(samples) // 2], 1),
        "p90": round(samples[int(len(samples) * 0.9)], 1),
        "p99": round(samples[int(len(samples) * 0.99)], 1),
        "max": round(samples[-1], 1),
        "min": round(samples[0], 1),
        "num": len(samples),
    }


def _analysis(rng: random.Random, fill: dict[str, str]) -> Json:
    booked = rng.random() < 0.6
    return {
        "call_summary": (
            f"{fill['name']} called {fill['org']} to book an appointment. "
            + (f"Booked for {fill['day']} at {fill['hour']}." if booked else "Nothing booked.")
        ),
        "user_sentiment": rng.choice(SENTIMENTS),
        "call_successful": booked,
        "in_voicemail": False,
        "custom_analysis_data": {
            "appointment_booked": booked,
            "appointment_slot": f"{fill['day']} {fill['hour']}" if booked else None,
            "customer_name": fill["name"],
            "follow_up_required": rng.random() < 0.3,
            "reason_for_call": rng.choice(("booking", "reschedule", "billing", "insurance")),
        },
    }


def _base_call(rng: random.Random, run_id: str, fill: dict[str, str], start_ms: int) -> Json:
    agent_name = fill["agent"]
    customer, business = phone_number(rng), phone_number(rng)
    inbound = rng.random() < 0.7
    return {
        "call_id": CALL_ID_SLOT,
        "agent_id": "agent_" + hashlib.sha256(agent_name.encode()).hexdigest()[:24],
        "agent_version": rng.randint(1, 12),
        "agent_name": agent_name,
        "call_type": "phone_call",
        "direction": "inbound" if inbound else "outbound",
        "from_number": customer if inbound else business,
        "to_number": business if inbound else customer,
        "call_status": "ongoing",
        "start_timestamp": start_ms,
        "metadata": {"bench_run": run_id, "crm_contact_id": f"c_{rng.randrange(10**8):08d}"},
        "retell_llm_dynamic_variables": {
            "customer_name": fill["name"],
            "clinic_name": fill["org"],
            "preferred_day": fill["day"],
        },
        "opt_out_sensitive_data_storage": False,
    }


def _ended_call(rng: random.Random, call: Json, turns: list[Json], reason: str) -> Json:
    duration_ms = int((turns[-1]["words"][-1]["end"] + rng.uniform(0.5, 3.0)) * 1000)
    exchanges = len(turns) // 2
    return dict(
        call,
        call_status="ended",
        transcript=transcript_text(turns),
        transcript_object=turns,
        recording_url=f"{CDN}/{CALL_ID_SLOT}/recording.wav",
        public_log_url=f"{CDN}/{CALL_ID_SLOT}/public.log",
        disconnection_reason=reason,
        end_timestamp=call["start_timestamp"] + duration_ms,
        duration_ms=duration_ms,
        call_cost=call_cost(rng, duration_ms / 1000),
        latency={
            "e2e": _latency_block(rng, 900, exchanges),
            "llm": _latency_block(rng, 450, exchanges),
        },
    )


def _fill(rng: random.Random) -> dict[str, str]:
    agent, org = rng.choice(AGENTS)
    return {
        "name": rng.choice(CUSTOMERS), "org": org, "agent": agent,
        "day": rng.choice(DAYS), "hour": rng.choice(HOURS),
    }  # fmt: skip


def render_call(rng: random.Random, run_id: str) -> tuple[bytes, bytes, bytes]:
    """The three webhook bodies of one call, with ``CALL_ID_SLOT`` where the id goes.

    The transcript is grown until the ended/analyzed bodies land on a random size in
    [MIN_BODY_BYTES, MAX_TEMPLATE_BYTES]; call_started carries at most the greeting.
    """
    fill = _fill(rng)
    start_ms = time.time_ns() // 1_000_000 - rng.randrange(60_000, 3_600_000)
    call = _base_call(rng, run_id, fill, start_ms)
    analysis = _analysis(rng, fill)
    reason = rng.choice(("user_hangup", "agent_hangup", "agent_hangup"))
    dialogue = _dialogue(rng, fill)
    turns = [next(dialogue), next(dialogue)]

    # Grow on an estimate (re-encoding per turn would be quadratic), then fix up exactly.
    target = rng.randint(MIN_BODY_BYTES, MAX_TEMPLATE_BYTES - _json_size(analysis))
    size = _json_size({"event": "call_ended", "call": _ended_call(rng, call, turns, reason)})
    while size < target:
        turns.append(next(dialogue))
        size += _turn_cost(turns[-1])
    for _ in range(100):
        ended = _ended_call(rng, call, turns, reason)
        ended_body = encode_json({"event": "call_ended", "call": ended})
        analyzed_body = encode_json(
            {"event": "call_analyzed", "call": {**ended, "call_analysis": analysis}}
        )
        if len(analyzed_body) > MAX_TEMPLATE_BYTES and len(turns) > 2:
            turns.pop()
        elif len(ended_body) < MIN_BODY_BYTES:
            turns.append(next(dialogue))
        else:
            break
    else:
        raise RuntimeError("could not fit the transcript into the body size range")

    opening = turns[: rng.randint(0, 2)]
    started = dict(call, transcript=transcript_text(opening), transcript_object=opening)
    return encode_json({"event": "call_started", "call": started}), ended_body, analyzed_body


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


@dataclass
class Tally:
    latencies_ns: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    timeouts: int = 0
    reconnects: int = 0  # a keep-alive-friendly server keeps this at 0
    body_bytes: int = 0


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


# ---------------------------------------------------------------- CLI / report


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
    add("--concurrency", type=_bounded_int(1, 1024), default=16, help="connections (default: 16)")
    add("--requests", type=_bounded_int(1, 10**8), help="timed requests (default: 3000)")
    add("--duration", type=_bounded_float(0.1, HARD_CAP_SECONDS), help="timed seconds")
    add("--warmup", type=_bounded_int(0, 10**6), default=100, help="uncounted (default: 100)")
    add("--timeout", type=_bounded_float(0.1, 300), default=30.0, help="per request, s")
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


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def _bounded_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def _render_templates(args: argparse.Namespace, run_id: str) -> list[tuple[bytes, ...]]:
    needed = -(-(args.warmup + args.requests) // len(EVENTS)) + args.concurrency
    rng = random.Random(args.seed)
    return [render_call(rng, run_id) for _ in range(min(needed, MAX_TEMPLATES))]


def _stop_reason(budget: Budget, duration_deadline: float | None) -> str:
    if budget.server_gone:
        return "errors (server stopped answering)"
    if budget.issued >= budget.limit:
        return "requests"
    if duration_deadline is not None and budget.deadline == duration_deadline:
        return "duration"
    return "hard-cap"


def _report(
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


def _format_text(report: Json) -> str:
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
            *_server_lines(report),
        )
    )


def _server_lines(report: Json) -> list[str]:
    if "server" not in report:
        return []
    cpu = report["server_cpu_ms_per_response"]
    return [f"server        {report['server']}, CPU {_ms(cpu)} ms per response"]


def _cpu_per_response(server: SpawnedServer, before: float | None, tally: Tally) -> float | None:
    after = server.cpu_seconds()
    if before is None or after is None or not tally.latencies_ns:
        return None
    return round((after - before) * 1000 / len(tally.latencies_ns), 3)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


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
        began = time.perf_counter()
        duration_deadline = None if args.duration is None else began + args.duration
        deadline = min(hard_deadline, duration_deadline or hard_deadline)
        tally, budget = await _run_phase(workers, args.requests, deadline)
        elapsed = time.perf_counter() - began
        tally.reconnects = sum(conn.connects for conn in conns) - dials_before
    finally:
        for conn in conns:
            conn.close()
    report = _report(args, tally, elapsed, _stop_reason(budget, duration_deadline), run_id)
    if server is not None:
        report["server"] = server.kind
        report["server_cpu_ms_per_response"] = _cpu_per_response(server, cpu_before, tally)
    print(json.dumps(report) if args.json else _format_text(report))
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
