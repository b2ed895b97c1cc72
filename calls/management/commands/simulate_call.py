"""``manage.py simulate_call``: play Retell's side of a call against a running backend.

Thin: options in, ``simulator.run`` does the call(s), ``simulator.report`` shapes the
output. Exit status 0; with ``--check``, 1 when the backend broke a protocol rule; 2 when
nothing could be played (unreachable target, unknown scenario).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from argparse import ArgumentParser, ArgumentTypeError
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from simulator import report
from simulator.run import CallResult, Options, SimulatorError, ensure_reachable
from simulator.run import simulate_call as play_one
from simulator.run import simulate_calls as play_many
from simulator.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    interrupt_flag,
    load_scenario,
    say_flag,
    scenario_with_steps,
    silence_flag,
    steps_from_flags,
)
from simulator.socket_player import Timing
from simulator.timeline import Moment

DEFAULTS = Timing()


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(value: str) -> int | float:
        try:
            number = kind(value)
        except ValueError:
            number = 0
        if number <= 0:
            raise ArgumentTypeError(f"must be a positive number (got {value!r})")
        return number

    return parse


class Command(BaseCommand):
    help = "Play one realistic Retell call (or many) against a backend; --check for conformance."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add = parser.add_argument
        add("--url", default="http://127.0.0.1:8000", help="The backend's base URL (webhooks).")
        add("--api-key", help="Webhook signing key (default: settings.RETELL_API_KEY).")
        add("--socket-url", help="Retell's llm_websocket_url (default: <url as ws>/llm-websocket).")
        add("--webhook-path", default="/webhook", help="Webhook path under --url.")
        add("--scenario", default=DEFAULT_SCENARIO, help="Bundled name or a JSON file.")
        add("--say", dest="steps", action="append", type=say_flag, help="A caller turn.")
        add("--interrupt", dest="steps", action="append", type=interrupt_flag,
            help="Said over the answer to the preceding --say.")  # fmt: skip
        add("--silence", dest="steps", action="append", type=silence_flag, metavar="MS",
            help="The caller is silent for MS ms (then reminder_required).")  # fmt: skip
        add("--check", action="store_true", help="Probe the webhook too; exit 1 on violations.")
        add("--json", metavar="PATH", help="Write the JSON report to PATH ('-': stdout).")
        add("--calls", type=_positive(int), default=1, help="Calls to play.")
        add("--concurrency", type=_positive(int), default=1, help="Calls at once.")
        add("--pace", type=float, default=1.0, help="Speed of speech and silences; 0 = no waits.")
        seconds = _positive(float)
        add("--begin-timeout", type=seconds, default=DEFAULTS.begin_timeout,
            help="Seconds to wait for response_id 0.")  # fmt: skip
        add("--answer-timeout", type=seconds, default=DEFAULTS.answer_timeout,
            help="Seconds an answer may take to complete.")  # fmt: skip
        add("--ping-interval", type=seconds, default=DEFAULTS.ping_interval)
        add("--ping-timeout", type=seconds, default=DEFAULTS.ping_timeout,
            help="Seconds a ping_pong may take to be answered (Retell: 5).")  # fmt: skip
        add("--seed", type=int, default=1, help="Seed for word timings and callers' numbers.")
        add("--allow-remote", action="store_true", help="Allow a target other than loopback.")

    def handle(self, *args: Any, **options: Any) -> None:
        scenario = self._scenario(options)
        settings_ = Options(
            url=options["url"],
            api_key=options["api_key"] or settings.RETELL_API_KEY,
            socket_url=options["socket_url"],
            webhook_path=options["webhook_path"],
            check=options["check"],
            timing=Timing(
                begin_timeout=options["begin_timeout"],
                answer_timeout=options["answer_timeout"],
                ping_interval=options["ping_interval"],
                ping_timeout=options["ping_timeout"],
                pace=max(options["pace"], 0.0),
            ),
            allow_remote=options["allow_remote"],
            seed=options["seed"],
        )
        began = time.perf_counter()
        try:
            results = asyncio.run(self._play(settings_, scenario, options))
        except SimulatorError as exc:
            raise CommandError(str(exc), returncode=2) from None
        self._output(results, time.perf_counter() - began, options)
        violations = sum(len(result.timeline.violations) for result in results)
        if options["check"] and violations:
            raise CommandError(f"{violations} protocol violation(s)", returncode=1)

    def _scenario(self, options: dict[str, Any]) -> Scenario:
        try:
            base = load_scenario(options["scenario"])
            return scenario_with_steps(base, steps_from_flags(options["steps"] or []))
        except ScenarioError as exc:
            raise CommandError(str(exc), returncode=2) from None

    async def _play(
        self, settings_: Options, scenario: Scenario, options: dict[str, Any]
    ) -> list[CallResult]:
        await ensure_reachable(settings_)
        if options["calls"] == 1:
            live = None if options["json"] == "-" else self._print_moment
            return [await play_one(settings_, scenario, listener=live)]
        progress = report.ProgressBar(sys.stderr, options["calls"]) if sys.stderr.isatty() else None
        return await play_many(
            settings_,
            scenario,
            calls=options["calls"],
            concurrency=options["concurrency"],
            progress=progress,
        )

    def _print_moment(self, moment: Moment) -> None:
        self.stdout.write(report.format_moment(moment))
        self.stdout.flush()

    def _output(self, results: list[CallResult], elapsed: float, options: dict[str, Any]) -> None:
        if options["json"]:
            document = json.dumps(report.report_json(results, elapsed=elapsed), ensure_ascii=False)
            if options["json"] == "-":
                self.stdout.write(document)
                return
            Path(options["json"]).write_text(document + "\n", encoding="utf-8")
        if len(results) == 1:
            self.stdout.write(report.format_call(results[0], check=options["check"]))
        else:
            summary = report.format_many(
                results, elapsed=elapsed, concurrency=options["concurrency"]
            )
            self.stdout.write(summary)
