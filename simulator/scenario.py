"""Scenarios: who calls, what they say, when they fall silent or talk over the agent.

A scenario file (``config/scenarios/<name>.json``)::

    {
      "description": "one line",
      "call": {...},        # call-object fields: agent, numbers, metadata, dynamic variables
      "analysis": {...},    # the call_analysis Retell would send in call_analyzed
      "steps": [
        {"say": "What are your opening hours?"},
        {"say": "Could I book for Tuesday?", "interrupt": "Sorry, Wednesday!"},
        {"silence_ms": 3000}
      ],
      "hangup": "user_hangup",       # how the call ends if the agent does not end it
      "expect_ending": "call_transfer"  # optional: what the author expects to happen
    }

``say`` is a caller turn (``update_only`` then ``response_required``); ``interrupt`` is
said over the agent's answer as soon as it starts streaming (a newer request); a silence
is followed by ``reminder_required``. The agent ends the call early with ``end_call`` or
``transfer_number``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "config" / "scenarios"
DEFAULT_SCENARIO = "default"
HANGUPS = ("user_hangup", "inactivity")
ENDINGS = ("user_hangup", "inactivity", "agent_hangup", "call_transfer")


class ScenarioError(ValueError):
    """A scenario that cannot be played; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Step:
    say: str = ""
    interrupt: str = ""
    silence_ms: int = 0

    @property
    def is_silence(self) -> bool:
        return not self.say


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    call: dict[str, Any]
    analysis: dict[str, Any]
    steps: tuple[Step, ...]
    hangup: str = "user_hangup"
    expect_ending: str | None = None


def scenario_path(name_or_path: str) -> Path:
    """A bundled scenario's name (``default``) or a path to a JSON file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".json" or candidate.parent != Path("."):
        return candidate
    return SCENARIO_DIR / f"{name_or_path}.json"


def bundled_scenarios() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.json"))


def load_scenario(name_or_path: str) -> Scenario:
    path = scenario_path(name_or_path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(bundled_scenarios())
        raise ScenarioError(f"no scenario {name_or_path!r} (bundled: {known})") from None
    except ValueError as exc:
        raise ScenarioError(f"{path}: not valid JSON ({exc})") from None
    try:
        return parse_scenario(document, name=path.stem)
    except ScenarioError as exc:
        raise ScenarioError(f"{path}: {exc}") from None


def parse_scenario(document: Any, *, name: str) -> Scenario:
    if not isinstance(document, dict):
        raise ScenarioError("a scenario is a JSON object")
    call = _object(document, "call")
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError("'steps' must be a non-empty list")
    hangup = document.get("hangup", "user_hangup")
    if hangup not in HANGUPS:
        raise ScenarioError(f"'hangup' must be one of {', '.join(HANGUPS)}")
    expect = document.get("expect_ending")
    if expect is not None and expect not in ENDINGS:
        raise ScenarioError(f"'expect_ending' must be one of {', '.join(ENDINGS)}")
    return Scenario(
        name=name,
        description=str(document.get("description", "")),
        call=call,
        analysis=_object(document, "analysis", required=False),
        steps=tuple(_step(item, index) for index, item in enumerate(steps, 1)),
        hangup=hangup,
        expect_ending=expect,
    )


def _object(document: dict[str, Any], key: str, *, required: bool = True) -> dict[str, Any]:
    value = document.get(key, None if required else {})
    if not isinstance(value, dict):
        raise ScenarioError(f"'{key}' must be an object")
    return value


def _step(item: Any, index: int) -> Step:
    if not isinstance(item, dict):
        raise ScenarioError(f"step {index} must be an object")
    say, interrupt, silence = item.get("say", ""), item.get("interrupt", ""), item.get("silence_ms")
    if silence is not None:
        if isinstance(silence, bool) or not isinstance(silence, int) or silence < 0 or say:
            raise ScenarioError(f"step {index}: 'silence_ms' is a whole number, alone")
        return Step(silence_ms=silence)
    if not isinstance(say, str) or not say.strip() or not isinstance(interrupt, str):
        raise ScenarioError(f"step {index}: needs 'say' (text) or 'silence_ms'")
    return Step(say=say, interrupt=interrupt)


def scenario_with_steps(base: Scenario, steps: list[Step]) -> Scenario:
    """``base``'s caller and agent with the turns given on the command line instead."""
    if not steps:
        return base
    return Scenario(
        name=f"{base.name}+flags",
        description="turns from the command line",
        call=base.call,
        analysis=base.analysis,
        steps=tuple(steps),
        hangup=base.hangup,
    )


@dataclass(frozen=True, slots=True)
class Interrupt:
    """``--interrupt TEXT`` on the command line: said over the answer to the preceding --say."""

    text: str


def say_flag(text: str) -> Step:
    return Step(say=text)


def interrupt_flag(text: str) -> Interrupt:
    return Interrupt(text)


def silence_flag(text: str) -> Step:
    milliseconds = int(text)
    if milliseconds < 0:
        raise ValueError("a silence is zero or more milliseconds")
    return Step(silence_ms=milliseconds)


def steps_from_flags(items: list[Step | Interrupt]) -> list[Step]:
    """The command line's turns in order, each --interrupt folded into the --say before it."""
    steps: list[Step] = []
    for item in items:
        if isinstance(item, Step):
            steps.append(item)
        elif steps and not steps[-1].is_silence and not steps[-1].interrupt:
            steps[-1] = Step(say=steps[-1].say, interrupt=item.text)
        else:
            raise ScenarioError("each --interrupt must follow its own --say")
    return steps
