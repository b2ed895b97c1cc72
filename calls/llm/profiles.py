"""Agent profiles: which responder answers a call, with which prompt and lines.

A profile is an ``AgentProfile`` row matched by the call's ``agent_id``, or else the default
profile: the JSON file ``AGENT_PROFILE_FILE`` with ``AGENT_RESPONDER`` choosing its
responder. Sessions work on a frozen :class:`Profile` snapshot, so an admin edit mid-call
does not change a call already in progress.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from calls.llm.reads import aread
from calls.models import AgentProfile

DEFAULT_AGENT = ""
VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")
# Call-object keys offered as {{variables}} beside the call's own dynamic variables.
CALL_VARIABLES = ("call_id", "agent_id", "from_number", "to_number", "direction", "call_type")


@dataclass(frozen=True, slots=True)
class ScriptRule:
    keywords: tuple[str, ...]
    reply: str
    end_call: bool = False
    transfer_number: str = ""
    digit_to_press: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    agent_id: str = DEFAULT_AGENT
    name: str = "default"
    responder: str = "scripted"
    system_prompt: str = ""
    begin_message: str = ""
    reminder_line: str = ""
    fallback_line: str = "Sorry, could you say that again?"
    closing_line: str = "Thank you for calling. Goodbye!"
    rules: tuple[ScriptRule, ...] = ()
    end_call_phrases: tuple[str, ...] = ()
    model: str = ""
    temperature: float | None = None
    tools_enabled: bool = True
    transfer_number: str = ""
    base_url: str = ""
    api_key_env: str = ""

    @property
    def greeting_needs_call_data(self) -> bool:
        return bool(VARIABLE.search(self.begin_message))


def render(template: str, variables: Mapping[str, str]) -> str:
    """``{{name}}`` -> its value; unknown names become empty rather than being read aloud."""
    return VARIABLE.sub(lambda match: variables.get(match.group(1), ""), template)


def call_variables(call: Mapping[str, Any] | None) -> dict[str, str]:
    """What ``{{...}}`` can use: a few call facts, overridden by the call's dynamic variables."""
    if not call:
        return {}
    values = {name: str(call[name]) for name in CALL_VARIABLES if call.get(name) is not None}
    dynamic = call.get("retell_llm_dynamic_variables")
    if isinstance(dynamic, dict):
        values.update({str(k): str(v) for k, v in dynamic.items() if v is not None})
    return values


def _rules(raw: object) -> tuple[ScriptRule, ...]:
    if not isinstance(raw, list):
        return ()
    rules = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("reply"), str):
            continue
        keywords = item.get("keywords")
        rules.append(
            ScriptRule(
                keywords=tuple(
                    str(word).lower() for word in keywords if isinstance(word, str) and word
                )
                if isinstance(keywords, list)
                else (),
                reply=item["reply"],
                end_call=item.get("end_call") is True,
                transfer_number=str(item.get("transfer_number") or ""),
                digit_to_press=str(item.get("digit_to_press") or ""),
            )
        )
    return tuple(rules)


def _phrases(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(str(phrase).lower() for phrase in raw if isinstance(phrase, str) and phrase)


_TEXT_FIELDS = (
    "responder",
    "system_prompt",
    "begin_message",
    "reminder_line",
    "fallback_line",
    "closing_line",
    "model",
    "transfer_number",
    "base_url",
    "api_key_env",
)


def profile_from_mapping(data: Mapping[str, Any], *, agent_id: str, name: str) -> Profile:
    """Build a profile from a JSON document or a model row's values; blanks keep defaults."""
    values: dict[str, Any] = {"agent_id": agent_id, "name": name}
    for key in _TEXT_FIELDS:
        value = data.get(key)
        if isinstance(value, str) and value:
            values[key] = value
    temperature = data.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        values["temperature"] = float(temperature)
    if isinstance(data.get("tools_enabled"), bool):
        values["tools_enabled"] = data["tools_enabled"]
    values["rules"] = _rules(data.get("rules"))
    values["end_call_phrases"] = _phrases(data.get("end_call_phrases"))
    return replace(Profile(), **values)


@lru_cache(maxsize=4)
def _profile_file(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"AGENT_PROFILE_FILE={path!r} is unusable: {exc}") from None
    if not isinstance(document, dict):
        raise ImproperlyConfigured(f"AGENT_PROFILE_FILE={path!r} must hold a JSON object.")
    return document


def default_profile() -> Profile:
    return _default_profile(settings.AGENT_PROFILE_FILE, settings.AGENT_RESPONDER)


@lru_cache(maxsize=4)
def _default_profile(path: str, responder: str) -> Profile:
    # Built once, not per call (a Profile is frozen): every socket asks for it while it opens.
    document = _profile_file(path)
    data = {**document, "responder": responder}
    return profile_from_mapping(
        data, agent_id=DEFAULT_AGENT, name=str(document.get("name", "default"))
    )


def _row_profile(row: AgentProfile) -> Profile:
    values = {f.name: getattr(row, f.name) for f in AgentProfile._meta.concrete_fields}
    return profile_from_mapping(values, agent_id=row.agent_id, name=str(row))


def profile_for_agent(agent_id: str | None) -> Profile:
    """The active profile for ``agent_id``, else the default one."""
    if agent_id:
        row = AgentProfile.objects.filter(agent_id=agent_id, is_active=True).first()
        if row is not None:
            return _row_profile(row)
    return default_profile()


def agent_profiles_configured() -> bool:
    """Whether any agent has its own profile: then the greeting waits to learn the agent."""
    return AgentProfile.objects.filter(is_active=True).exists()


def api_key_for(profile: Profile) -> str:
    """A profile names the variable holding its key, so keys never sit in the database."""
    if profile.api_key_env:
        return os.environ.get(profile.api_key_env, "")
    return str(settings.OPENAI_API_KEY)


async def aprofile_for_agent(agent_id: str | None) -> Profile:
    # On a read thread: a slow query for one call must not hold up another call's writes.
    return await aread(profile_for_agent, agent_id=agent_id)
