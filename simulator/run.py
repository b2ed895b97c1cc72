"""Play one call, or many at once: webhooks and socket in Retell's order.

``call_started`` -> the socket (config, call_details, begin message, the scenario's turns)
-> ``call_ended`` and ``call_analyzed`` with the transcript the conversation produced ->
with ``check``, the webhook probes.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake

from bench._common import HttpConnection, Target, parse_target
from bench.calldata import phone_number
from simulator.callobject import (
    CallEnding,
    CallIdentity,
    Json,
    analyzed_call,
    ended_call,
    started_call,
)
from simulator.conformance import Answer, Rule
from simulator.scenario import Scenario
from simulator.socket_player import SocketPlayer, Timing
from simulator.timeline import Listener, Timeline
from simulator.webhook_player import Delivery, WebhookPlayer

MAX_FRAME_BYTES = 16 * 1024 * 1024  # generous: a long answer in one frame is not our concern


class SimulatorError(Exception):
    """The simulation could not run at all (unreachable target, bad URL)."""


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    api_key: str
    socket_url: str | None = None  # Retell's llm_websocket_url; default <url as ws>/llm-websocket
    webhook_path: str = "/webhook"
    check: bool = False
    timing: Timing = field(default_factory=Timing)
    allow_remote: bool = False
    seed: int = 1

    def target(self) -> Target:
        try:
            return parse_target(self.url, allow_remote=self.allow_remote)
        except ValueError as exc:
            raise SimulatorError(str(exc)) from None

    def socket_base(self) -> str:
        if self.socket_url:
            return self.socket_url
        parts = urlsplit(self.url)
        return urlunsplit(("ws", parts.netloc, parts.path.rstrip("/") + "/llm-websocket", "", ""))


def socket_url_for(base: str, call_id: str) -> str:
    """Retell appends the call id as the last path segment, keeping any query (B.1)."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + "/" + call_id
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


@dataclass(slots=True)
class CallResult:
    call_id: str
    scenario: Scenario
    timeline: Timeline
    ending: str = ""
    transfer_destination: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    probes: list[Delivery] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    ping_round_trips_ns: list[int] = field(default_factory=list)
    interruptions: int = 0
    in_flight: int = 0

    @property
    def violations(self) -> list[Rule]:
        return [violation.rule for violation in self.timeline.violations]

    @property
    def notes(self) -> list[str]:
        expected = self.scenario.expect_ending
        if expected and self.ending != expected:
            return [f"the scenario expected the call to end with {expected}, not {self.ending}"]
        return []


async def ensure_reachable(options: Options) -> None:
    target = options.target()
    probe = HttpConnection(target.host, target.port, timeout=options.timing.open_timeout)
    try:
        await probe.connect()
    except (OSError, TimeoutError) as exc:
        raise SimulatorError(f"cannot connect to {options.url}: {exc}") from None
    finally:
        probe.close()


def caller_fields(scenario: Scenario, rng: random.Random, index: int) -> Json:
    """The scenario's call; from the second call on, a different caller's number."""
    fields = dict(scenario.call)
    if index > 0:
        side = "from_number" if fields.get("direction", "inbound") == "inbound" else "to_number"
        fields[side] = phone_number(rng)
    return fields


async def simulate_call(
    options: Options, scenario: Scenario, *, index: int = 0, listener: Listener | None = None
) -> CallResult:
    rng = random.Random(options.seed * 100_003 + index)  # noqa: S311 - variety, not secrecy
    call_id = f"call_sim_{uuid.uuid4().hex[:20]}"
    timeline = Timeline(listener)
    identity = CallIdentity(call_id, caller_fields(scenario, rng, index), _now_ms())
    result = CallResult(call_id, scenario, timeline)
    webhooks = WebhookPlayer(
        options.target(),
        path=options.webhook_path,
        api_key=options.api_key,
        timeout=options.timing.http_timeout,
        timeline=timeline,
    )
    try:
        await webhooks.deliver("call_started", started_call(identity))
        player = await _play_socket(options, scenario, identity, timeline, rng, result)
        ending = CallEnding(
            end_ms=_now_ms(),
            reason=result.ending,
            transcript=player.transcript if player else [],
            first_frame_ms=[a.first_ms for a in result.answers if a.first_ms is not None],
            transfer_destination=result.transfer_destination,
        )
        ended = ended_call(identity, ending, rng)
        await webhooks.deliver("call_ended", ended)
        await webhooks.deliver("call_analyzed", analyzed_call(ended, scenario.analysis))
        if options.check:
            await webhooks.probe(ended)
    finally:
        webhooks.close()
    result.deliveries, result.probes = webhooks.deliveries, webhooks.probes
    return result


async def _play_socket(
    options: Options,
    scenario: Scenario,
    identity: CallIdentity,
    timeline: Timeline,
    rng: random.Random,
    result: CallResult,
) -> SocketPlayer | None:
    url = socket_url_for(options.socket_base(), identity.call_id)
    try:
        async with connect(
            url,
            proxy=None,
            open_timeout=options.timing.open_timeout,
            close_timeout=2,
            ping_interval=None,  # Retell's keepalive is ping_pong frames, not WebSocket pings
            compression=None,
            max_size=MAX_FRAME_BYTES,
        ) as ws:
            player = SocketPlayer(
                ws,
                identity=identity,
                scenario=scenario,
                timing=options.timing,
                timeline=timeline,
                rng=rng,
            )
            await player.play()
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        timeline.violate(Rule.SOCKET_NOT_OPENED, f"{url.split('?')[0]}: {exc}")
        result.ending = "error_llm_websocket_open"
        return None
    result.ending = player.ending or scenario.hangup
    result.transfer_destination = player.transfer_destination
    result.answers = list(player.ledger.answers.values())
    result.ping_round_trips_ns = player.pings.round_trips_ns
    result.interruptions = player.interruptions
    result.in_flight = player.ledger.in_flight
    return player


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


Progress = Callable[[list[CallResult]], None]


async def simulate_calls(
    options: Options,
    scenario: Scenario,
    *,
    calls: int,
    concurrency: int,
    progress: Progress | None = None,
) -> list[CallResult]:
    """``calls`` calls, at most ``concurrency`` at a time; results in call order."""
    gate = asyncio.Semaphore(concurrency)
    finished: list[CallResult] = []

    async def one(index: int) -> CallResult:
        async with gate:
            result = await simulate_call(options, scenario, index=index)
        finished.append(result)
        if progress is not None:
            progress(finished)
        return result

    return list(await asyncio.gather(*(one(index) for index in range(calls))))
