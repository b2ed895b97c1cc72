"""One requested answer on the call socket and how it went (calls/llm/session.py).

The figures (request to first frame, to complete; tools; the action taken) land in the
session's CallEvent when the socket closes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from calls.llm.responders import Action, EndCall, PressDigit, Transfer
from retellhub import metrics

# end_call > transfer_number > digit_to_press: at most one action per answer (D-FN).
ACTION_PRECEDENCE: dict[type[Action], int] = {EndCall: 3, Transfer: 2, PressDigit: 1}


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


@dataclass(slots=True)
class Turn:
    """One requested answer and how it went; the figures land in the session CallEvent."""

    response_id: int
    kind: str
    received: float
    outcome: str = "open"
    first_frame_ms: float | None = None
    complete_ms: float | None = None
    tool_calls: list[str] = field(default_factory=list)
    action: Action | None = None
    spoken: bool = False

    def frame_sent(self, *, complete: bool) -> None:
        if self.first_frame_ms is None:
            self.first_frame_ms = elapsed_ms(self.received)
            metrics.llm_first_frame(milliseconds=self.first_frame_ms)
        if complete:
            self.complete_ms = elapsed_ms(self.received)

    def offer(self, action: Action) -> None:
        if (
            self.action is None
            or ACTION_PRECEDENCE[type(action)] > ACTION_PRECEDENCE[type(self.action)]
        ):
            self.action = action

    def action_fields(self) -> dict[str, Any]:
        match self.action:
            case EndCall():
                return {"end_call": True}
            case Transfer(number=number):
                return {"transfer_number": number}
            case PressDigit(digit=digit):
                return {"digit_to_press": digit}
        return {}

    def as_record(self) -> dict[str, Any]:
        return {
            "response_id": self.response_id,
            "kind": self.kind,
            "outcome": self.outcome,
            "first_frame_ms": self.first_frame_ms,
            "complete_ms": self.complete_ms,
            "tool_calls": self.tool_calls,
            "action": next(iter(self.action_fields()), None),
        }
