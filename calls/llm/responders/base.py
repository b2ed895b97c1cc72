"""What every responder speaks: the answer context in, a stream of pieces out."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from calls.llm.profiles import Profile


@dataclass(frozen=True, slots=True)
class AnswerContext:
    response_id: int
    transcript: Sequence[Mapping[str, Any]]
    reminder: bool
    profile: Profile
    variables: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Speak:
    text: str


@dataclass(frozen=True, slots=True)
class ToolStarted:
    tool_call_id: str
    name: str
    arguments: str  # JSON text, as Retell's tool_call_invocation wants it


@dataclass(frozen=True, slots=True)
class ToolFinished:
    tool_call_id: str
    content: str
    successful: bool


@dataclass(frozen=True, slots=True)
class EndCall:
    pass


@dataclass(frozen=True, slots=True)
class Transfer:
    number: str


@dataclass(frozen=True, slots=True)
class PressDigit:
    digit: str


Action = EndCall | Transfer | PressDigit
Piece = Speak | ToolStarted | ToolFinished | Action


class Responder(Protocol):
    def answer(self, context: AnswerContext) -> AsyncGenerator[Piece, None]:
        """Stream one answer. Cancelling the consumer must release every resource held."""
        ...


def last_user_text(transcript: Sequence[Mapping[str, Any]]) -> str:
    for utterance in reversed(transcript):
        if utterance.get("role") == "user":
            return str(utterance.get("content", ""))
    return ""


DIGITS = frozenset("0123456789*#")


def is_digit(value: str) -> bool:
    return len(value) == 1 and value in DIGITS
