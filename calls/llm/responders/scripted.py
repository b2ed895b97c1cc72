"""The embedded responder: offline, deterministic, good enough to demo and to test with.

Reminder -> the reminder line. Otherwise the caller's last words are matched, in order,
against the end-call phrases (closing line + end call), then each rule's keywords (its
reply + its action); nothing matched -> the fallback line.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator

from calls.llm.profiles import Profile, ScriptRule, render
from calls.llm.responders.base import (
    Action,
    AnswerContext,
    EndCall,
    Piece,
    PressDigit,
    Speak,
    Transfer,
    is_digit,
    last_user_text,
)

DEFAULT_REMINDER = "Are you still there?"
WORD = re.compile(r"\S+\s*")


def _matches(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _rule_for(profile: Profile, text: str) -> ScriptRule | None:
    return next(
        (rule for rule in profile.rules if any(_matches(text, word) for word in rule.keywords)),
        None,
    )


def _rule_action(rule: ScriptRule) -> Action | None:
    if rule.end_call:
        return EndCall()
    if rule.transfer_number:
        return Transfer(rule.transfer_number)
    if is_digit(rule.digit_to_press):
        return PressDigit(rule.digit_to_press)
    return None


def scripted_reply(context: AnswerContext) -> tuple[str, Action | None]:
    profile = context.profile
    if context.reminder:
        return profile.reminder_line or DEFAULT_REMINDER, None
    text = last_user_text(context.transcript).lower()
    if text and any(_matches(text, phrase) for phrase in profile.end_call_phrases):
        return profile.closing_line, EndCall()
    rule = _rule_for(profile, text) if text else None
    if rule is None:
        return profile.fallback_line, None
    return rule.reply, _rule_action(rule)


class ScriptedResponder:
    async def answer(self, context: AnswerContext) -> AsyncGenerator[Piece, None]:
        reply, action = scripted_reply(context)
        # Word by word, like a model would stream; each yield is a point where a newer
        # request can cancel us.
        for word in WORD.findall(render(reply, context.variables)):
            yield Speak(word)
            await asyncio.sleep(0)
        if action is not None:
            yield action
