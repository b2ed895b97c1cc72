"""Load-test the call socket: M concurrent simulated Retell calls against a fake model.

Usage::

    # Starts the fake model and a daphne server (temporary SQLite database) itself:
    python bench/socket_load.py --calls 100 --turns 30
    # Or against a running server that already points OPENAI_BASE_URL at a running
    # `python -m bench.fake_model --port 8600 --ttft-ms 200 --token-ms 20`:
    python bench/socket_load.py --url ws://127.0.0.1:8000 --model-url http://127.0.0.1:8600 \\
        --ttft-ms 200 --calls 20

Each call opens ``/llm-websocket/<call_id>``, reads config and the begin message, sends
call_details, then plays ``--turns`` turns: an update_only, then a response_required
whose transcript grows every turn, read until ``content_complete``; then a pause. Every
``--interrupt-every``-th turn is interrupted: the request is superseded by a newer one,
half of the time while the model is still silent (before its first token), half after
the first frame. Each call also pings every ``--ping-ms`` like Retell does.

Stale frames: right after a superseding request the client sends a ping. The server
handles one connection's frames in order, so its pong is sent after it received the new
request; any frame for the superseded id that arrives after that pong was sent too late.
Frames already in flight before it are counted apart ("in flight"), as Retell drops them.

Server overhead = request -> first content frame, minus the fake model's time to first
token: what our server, the openai SDK and the loopback hops add.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as `python bench/socket_load.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench._common import bounded
from bench.cpu import cpu_snapshot, print_cpu
from bench.socket_report import Tally, ns_to_ms, report, write_samples
from bench.spawn import settled_model_stats, spawned_fake_model, spawned_server

TURN_TIMEOUT = 15.0
PHRASES = [
    "I would like to book an appointment for next week",
    "Do you have anything on Tuesday afternoon",
    "Actually Wednesday morning would be better for me",
    "Can you tell me what the price of a cleaning is",
]


def _text(document: dict[str, Any]) -> str:
    # orjson: the client encodes the growing transcript twice a turn per call, on the same
    # two cores as the server; the standard library took ~1.5 ms per 30-turn frame.
    return orjson.dumps(document).decode()


@dataclass
class Turn:
    index: int
    response_id: int
    sent_ns: int
    first_ns: int | None = None
    done_ns: int | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    first: asyncio.Event = field(default_factory=asyncio.Event)


class SimulatedCall:
    """One Retell call: a reader task routes frames, the call script sends requests."""

    def __init__(self, ws: ClientConnection, tally: Tally, args: argparse.Namespace) -> None:
        self.ws = ws
        self.tally = tally
        self.args = args
        self.turns: dict[int, Turn] = {}
        self.latest_id = 0
        # Ids superseded, and whether the marker pong after the newer request has come back.
        self.superseded: dict[int, bool] = {}
        self.pings: dict[int, int] = {}
        self.markers: dict[int, list[int]] = {}
        self.opened = asyncio.Event()
        self.frames = 0
        self.stamps = itertools.count(1)

    async def read(self) -> None:
        async for message in self.ws:
            if not isinstance(message, str):
                self.tally.errors["binary frame"] += 1
                continue
            self.route(orjson.loads(message), time.perf_counter_ns())

    def route(self, frame: dict[str, Any], now: int) -> None:
        kind = frame.get("response_type")
        if kind == "ping_pong":
            self.pong(frame["timestamp"], now)
        elif kind == "response":
            self.response(frame, now)
        elif kind not in {"config", "tool_call_invocation", "tool_call_result"}:
            self.tally.errors[f"unexpected {kind}"] += 1

    def pong(self, stamp: int, now: int) -> None:
        sent = self.pings.pop(stamp, None)
        if sent is not None:
            self.tally.ping_ns.append(now - sent)
            self.tally.samples.append((now / 1e9, "ping", ns_to_ms(now - sent)))
        for old_id in self.markers.pop(stamp, ()):
            self.superseded[old_id] = True

    def response(self, frame: dict[str, Any], now: int) -> None:
        response_id = frame["response_id"]
        if response_id == 0:
            self.opened.set()
            return
        if response_id in self.superseded:
            if self.superseded[response_id]:
                self.tally.stale += 1
            else:
                self.tally.in_flight += 1
            return
        turn = self.turns.get(response_id)
        if turn is None:
            self.tally.errors["frame for an unknown id"] += 1
            return
        if frame.get("content") and turn.first_ns is None:
            turn.first_ns = now
            turn.first.set()
        if frame.get("content_complete"):
            turn.done_ns = now
            turn.done.set()

    async def ping(self, *, marker_for: int | None = None) -> None:
        stamp = next(self.stamps)
        self.pings[stamp] = time.perf_counter_ns()
        if marker_for is not None:
            self.markers[stamp] = [marker_for]
        await self.ws.send(_text({"interaction_type": "ping_pong", "timestamp": stamp}))

    async def keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.args.ping_ms / 1000)
            await self.ping()

    async def request(self, index: int, transcript: list[dict[str, Any]]) -> Turn:
        self.latest_id += 1
        turn = Turn(index, self.latest_id, time.perf_counter_ns())
        self.turns[turn.response_id] = turn
        body = {
            "interaction_type": "response_required",
            "response_id": turn.response_id,
            "transcript": transcript,
        }
        await self.ws.send(_text(body))
        # Time the send itself took: it waits when the server is slow to read the socket
        # (part of the request latency, as for Retell).
        sent = time.perf_counter_ns()
        self.tally.send_ns.append(sent - turn.sent_ns)
        self.tally.samples.append((sent / 1e9, f"send_turn{index}", ns_to_ms(sent - turn.sent_ns)))
        return turn

    def supersede(self, turn: Turn) -> None:
        self.superseded[turn.response_id] = False
        self.turns.pop(turn.response_id, None)
        self.tally.interruptions += 1

    async def play(self, call_number: int) -> None:
        await asyncio.wait_for(self.opened.wait(), TURN_TIMEOUT)
        await self.ws.send(_text(call_details(call_number)))
        transcript: list[dict[str, Any]] = [utterance("agent", "Hello, how can I help?", 0)]
        for index in range(1, self.args.turns + 1):
            transcript.append(utterance("user", PHRASES[index % len(PHRASES)], index))
            await self.ws.send(_text({"interaction_type": "update_only", "transcript": transcript}))
            doomed = None
            if self.args.interrupt_every and index % self.args.interrupt_every == 0:
                doomed = await self.interrupted_request(index, transcript)
            turn = await self.request(index, transcript)
            if doomed is not None:
                # Right behind the newer request: the pong marks what came too late.
                await self.ping(marker_for=doomed.response_id)
            await asyncio.wait_for(turn.done.wait(), TURN_TIMEOUT)
            self.record(turn)
            transcript.append(utterance("agent", "word " * self.args.tokens, index))
            await asyncio.sleep(self.args.pause_ms / 1000)

    async def interrupted_request(self, index: int, transcript: list[dict[str, Any]]) -> Turn:
        """A request the caller talks over: superseded before it completes."""
        doomed = await self.request(index, transcript)
        if index // self.args.interrupt_every % 2:
            await asyncio.wait_for(doomed.first.wait(), TURN_TIMEOUT)
        else:
            await asyncio.sleep(self.args.ttft_ms / 2000)  # the model is still thinking
        self.supersede(doomed)
        return doomed

    def record(self, turn: Turn) -> None:
        if turn.first_ns is None or turn.done_ns is None:
            self.tally.errors["answer without content"] += 1
            return
        first = turn.first_ns - turn.sent_ns
        self.tally.first_frame_ns.append(first)
        every = self.args.interrupt_every
        kind = "first_after_interrupt" if every and turn.index % every == 0 else "first"
        self.tally.samples.append((turn.first_ns / 1e9, kind, ns_to_ms(first)))
        self.tally.complete_ns.append(turn.done_ns - turn.sent_ns)
        self.tally.by_turn.setdefault(turn.index, []).append(first)


def utterance(role: str, content: str, index: int) -> dict[str, Any]:
    words = [
        {"word": word, "start": index * 4 + n * 0.3, "end": index * 4 + n * 0.3 + 0.25}
        for n, word in enumerate(content.split())
    ]
    return {"role": role, "content": content, "words": words}


def call_details(call_number: int) -> dict[str, Any]:
    return {
        "interaction_type": "call_details",
        "call": {
            "call_id": f"call_bench_{call_number}",
            "agent_id": "agent_bench",
            "call_status": "registered",
            "call_type": "phone_call",
            "retell_llm_dynamic_variables": {"customer_name": "Bench"},
        },
    }


async def run_call(url: str, call_number: int, tally: Tally, args: argparse.Namespace) -> None:
    call_id = f"call_bench_{args.run_id}_{call_number}"
    try:
        async with connect(
            f"{url}/llm-websocket/{call_id}", proxy=None, open_timeout=30, compression=None
        ) as ws:
            call = SimulatedCall(ws, tally, args)
            reader = asyncio.create_task(call.read())
            pinger = asyncio.create_task(call.keepalive())
            try:
                await call.play(call_number)
            finally:
                pinger.cancel()
                reader.cancel()
    except TimeoutError:
        tally.errors["turn timed out"] += 1
    except OSError as exc:
        tally.errors[f"connection: {type(exc).__name__}"] += 1
    except Exception as exc:  # a benchmark reports failures, it does not stop at the first
        tally.errors[type(exc).__name__] += 1


async def watch_client_lag(tally: Tally, interval: float = 0.01) -> None:
    while True:
        before = time.perf_counter_ns()
        await asyncio.sleep(interval)
        lag = time.perf_counter_ns() - before - int(interval * 1e9)
        tally.client_lag_ns.append(max(lag, 0))
        if lag > 20e6:
            tally.samples.append((time.perf_counter_ns() / 1e9, "client_lag", ns_to_ms(lag)))


async def run(url: str, args: argparse.Namespace) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    watcher = asyncio.create_task(watch_client_lag(tally))
    calls = []
    for number in range(args.calls):
        calls.append(asyncio.create_task(run_call(url, number, tally, args)))
        await asyncio.sleep(args.ramp_ms / 1000)  # Retell's calls do not all start at once
    await asyncio.gather(*calls)
    watcher.cancel()
    return tally, time.perf_counter() - started


# --- servers -----------------------------------------------------------------------------


@contextmanager
def spawned_servers(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The fake model and the server (bench/spawn.py: a fresh SQLite database unless
    ``$DATABASE_URL`` is set) answering calls with it, stopped afterwards."""
    kind = "uvicorn" if args.server == "serve" else args.server
    pace = {"ttft_ms": args.ttft_ms, "token_ms": args.token_ms, "tokens": args.tokens}
    with spawned_fake_model(**pace) as model:
        responder = {
            "AGENT_RESPONDER": "openai",
            "OPENAI_BASE_URL": f"{model.url}/v1",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_MODEL": "fake-model",
        }
        with spawned_server(kind, responder) as server:
            pid = server.running.process.pid
            before = cpu_snapshot(pid, model.process.pid)
            yield server.ws_url, model.url
            print_cpu(before, cpu_snapshot(pid, model.process.pid))
        print(f"(server log: {server.running.log_path})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--url", help="ws://host:port of a running server (default: start one)")
    add("--model-url", help="http://host:port of the fake model that server uses")
    count, ms = bounded(int, 1, 10_000), bounded(float, 0.0, 600_000.0)
    add("--calls", type=count, default=20, help="concurrent calls (M)")
    add("--turns", type=count, default=30, help="turns per call")
    add("--ttft-ms", type=ms, default=200.0, help="fake model's time to first token")
    add("--token-ms", type=ms, default=20.0, help="fake model's spacing between tokens")
    add("--tokens", type=count, default=20, help="tokens per answer")
    # Between an answer and the next request the agent speaks it and the caller replies;
    # 2 s is brisk for a phone call. Lower it to stress the server beyond real pacing.
    add("--pause-ms", type=ms, default=2000.0, help="between an answer and the next request")
    ping_ms = bounded(float, 10.0, 600_000.0)  # a ping every few ms would only load the client
    add("--ping-ms", type=ping_ms, default=2000.0, help="ping_pong interval per call")
    every = bounded(int, 0, 10_000)
    add("--interrupt-every", type=every, default=4, help="interrupt every N-th turn (0: never)")
    add("--ramp-ms", type=ms, default=10.0, help="delay between call starts")
    add(
        "--server",
        choices=("daphne", "serve", "uvicorn"),
        default="daphne",
        help="server to start: daphne, or manage.py serve (uvicorn; production; both names)",
    )
    add("--run-id", default=uuid.uuid4().hex[:8])
    add("--samples", help="write every latency sample as a JSON line to this file")
    args = parser.parse_args(argv)
    if bool(args.url) != bool(args.model_url):
        parser.error("--url and --model-url go together")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.url:
        tally, elapsed = asyncio.run(run(args.url, args))
        report(tally, elapsed, settled_model_stats(args.model_url), args)
    else:
        with spawned_servers(args) as (url, model_url):
            tally, elapsed = asyncio.run(run(url, args))
            report(tally, elapsed, settled_model_stats(model_url), args)
    if args.samples:
        write_samples(tally, args.samples)


if __name__ == "__main__":
    main()
