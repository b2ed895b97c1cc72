"""One call's timeline: what each side did and when, and the violations seen on the way."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.conformance import Rule


@dataclass(frozen=True, slots=True)
class Moment:
    at_s: float
    actor: str  # webhook, socket, agent, caller, check
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: Rule
    detail: str
    at_s: float


Listener = Callable[[Moment], None]


class Timeline:
    """Seconds are counted from the call's start: the moment ``call_started`` goes out."""

    def __init__(self, listener: Listener | None = None) -> None:
        self._origin = time.perf_counter()
        self.moments: list[Moment] = []
        self.violations: list[Violation] = []
        self._listener = listener

    def now(self) -> float:
        return time.perf_counter() - self._origin

    def add(self, actor: str, text: str, **detail: Any) -> None:
        moment = Moment(round(self.now(), 3), actor, text, detail)
        self.moments.append(moment)
        if self._listener is not None:
            self._listener(moment)

    def violate(self, rule: Rule, detail: str) -> None:
        self.violations.append(Violation(rule, detail, round(self.now(), 3)))
        self.add("check", f"{rule}: {detail}")
