"""Answer producers behind one interface: ``responder_for(profile).answer(context)``.

An answer is an async stream of :data:`Piece` values: text to speak as it is produced,
tool-call records for Retell's transcript, and at most one call action. The session turns
them into ``response`` / ``tool_call_*`` frames; responders know nothing about sockets.
"""

from __future__ import annotations

from calls.llm.profiles import Profile
from calls.llm.responders.base import (
    Action,
    AnswerContext,
    EndCall,
    Piece,
    PressDigit,
    Responder,
    Speak,
    ToolFinished,
    ToolStarted,
    Transfer,
)
from calls.llm.responders.openai_chat import OpenAIResponder, prepare
from calls.llm.responders.scripted import ScriptedResponder

__all__ = [
    "Action",
    "AnswerContext",
    "EndCall",
    "Piece",
    "PressDigit",
    "Responder",
    "Speak",
    "ToolFinished",
    "ToolStarted",
    "Transfer",
    "prepare_responder",
    "responder_for",
]

_SCRIPTED = ScriptedResponder()
_OPENAI = OpenAIResponder()


def responder_for(profile: Profile) -> Responder:
    return _OPENAI if profile.responder == "openai" else _SCRIPTED


def prepare_responder(profile: Profile) -> None:
    """Build what the first answer would otherwise build, while the call is being greeted."""
    if profile.responder == "openai":
        prepare(profile)
