"""Answers from any OpenAI-compatible chat-completions endpoint, streamed.

The transcript becomes chat messages behind the profile's system prompt. Tool calls the
model makes (end_call, transfer_call, press_digit) become Retell actions, announced with
tool-call records so they show in Retell's transcript. The HTTP stream is closed in a
``finally``: when a newer request cancels this answer, the upstream generation stops
instead of running on unread.

The request goes out through calls/llm/upstream/, a lean HTTP/1.1 client, unless a
proxy is configured for the endpoint (``HTTPS_PROXY`` and friends): then through the
openai SDK, which knows proxies.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import urllib.parse
import urllib.request
import uuid
import weakref
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx2
from django.conf import settings
from openai import AsyncOpenAI, AsyncStream, DefaultAsyncHttpxClient

from calls.llm.profiles import Profile, api_key_for, render
from calls.llm.responders.base import (
    AnswerContext,
    EndCall,
    Piece,
    PressDigit,
    Speak,
    ToolFinished,
    ToolStarted,
    Transfer,
    is_digit,
)
from calls.llm.upstream import pool as upstream_pool
from calls.llm.upstream.client import post_events
from calls.llm.upstream.errors import UpstreamError
from retellhub import fastjson

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the openai SDK's default
END_OF_STREAM = b"[DONE]"

ROLES = {"agent": "assistant", "user": "user"}
REMINDER_NOTE = (
    "(The caller has said nothing for a while. Say one short sentence to re-engage them.)"
)
_MESSAGE = {"type": "string", "description": "The short sentence to say first."}
TOOLS: dict[str, dict[str, Any]] = {
    "end_call": {
        "description": "Hang up once the conversation is over or the caller wants to leave.",
        "parameters": {
            "type": "object",
            "properties": {"message": _MESSAGE},
            "required": ["message"],
        },
    },
    "transfer_call": {
        "description": "Transfer the caller to a human colleague.",
        "parameters": {
            "type": "object",
            "properties": {"message": _MESSAGE},
            "required": ["message"],
        },
    },
    "press_digit": {
        "description": "Press a key on the phone keypad, e.g. to navigate a phone menu.",
        "parameters": {
            "type": "object",
            "properties": {"digit": {"type": "string", "enum": sorted("0123456789*#")}},
            "required": ["digit"],
        },
    },
}


# Clients per endpoint (and event loop) per process, so their connection pools are reused
# across calls. Keyed by loop because pooled connections cannot cross event loops.
#
# Several clients, not one, taken in turn: on every request and every release the HTTP
# pool walks all its connections and polls the socket of each idle one. With one pool
# that is a walk over ~M connections at M concurrent calls, twice a request, on the event
# loop that also answers every call's pings; spread over POOL_SHARDS pools it is ~M/16.
POOL_SHARDS = 16


@dataclass(slots=True)
class _Shards:
    clients: list[AsyncOpenAI] = field(default_factory=list)
    turn: int = 0


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], _Shards]]
_clients = weakref.WeakKeyDictionary()
_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle is most of what a client costs (~20 ms): once per process.
    global _tls
    if _tls is None:
        _tls = httpx2.create_ssl_context()
    return _tls


def openai_client(*, base_url: str, api_key: str) -> AsyncOpenAI:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    shards = per_loop.setdefault((base_url, api_key), _Shards())
    index = shards.turn % POOL_SHARDS
    shards.turn = index + 1
    if index < len(shards.clients):
        return shards.clients[index]
    client = AsyncOpenAI(
        base_url=base_url or None,
        # Local OpenAI-compatible servers often need no key; the SDK insists on one.
        api_key=api_key or "unused",
        # No SDK retries: Retell re-asks within a second anyway, and a retry would
        # only delay the fallback line.
        max_retries=0,
        timeout=settings.LLM_ANSWER_TIMEOUT_MS / 1000,
        http_client=DefaultAsyncHttpxClient(verify=_tls_context()),
    )
    shards.clients.append(client)
    return client


def client_for(profile: Profile) -> AsyncOpenAI:
    return openai_client(
        base_url=profile.base_url or settings.OPENAI_BASE_URL, api_key=api_key_for(profile)
    )


def chat_messages(context: AnswerContext) -> list[dict[str, str]]:
    messages = []
    prompt = render(context.profile.system_prompt, context.variables)
    if prompt:
        messages.append({"role": "system", "content": prompt})
    for utterance in context.transcript:
        role = ROLES.get(str(utterance.get("role")))
        content = str(utterance.get("content", ""))
        if role and content:
            messages.append({"role": role, "content": content})
    if context.reminder:
        messages.append({"role": "user", "content": REMINDER_NOTE})
    return messages


def tool_specs(profile: Profile) -> list[dict[str, Any]]:
    if not profile.tools_enabled:
        return []
    names = [name for name in TOOLS if name != "transfer_call" or profile.transfer_number]
    return [{"type": "function", "function": {"name": name, **TOOLS[name]}} for name in names]


def request_options(context: AnswerContext) -> dict[str, Any]:
    profile = context.profile
    options: dict[str, Any] = {
        "model": profile.model or settings.OPENAI_MODEL,
        "messages": chat_messages(context),
        "stream": True,
    }
    if profile.temperature is not None:
        options["temperature"] = profile.temperature
    tools = tool_specs(profile)
    if tools:
        options["tools"] = tools
    return options


@dataclass(slots=True)
class ToolCallDraft:
    """A tool call as it streams in: id and name once, arguments in fragments."""

    tool_call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _delta(chunk: object) -> Mapping[str, Any]:
    """The first choice's delta of a raw ``chat.completion.chunk`` (empty if it has none)."""
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    delta = choice.get("delta") if isinstance(choice, dict) else None
    return delta if isinstance(delta, dict) else {}


def _collect_tool_calls(drafts: dict[int, ToolCallDraft], deltas: object) -> None:
    for delta in deltas if isinstance(deltas, list) else ():
        if not isinstance(delta, dict) or not isinstance(delta.get("index"), int):
            continue
        draft = drafts.setdefault(delta["index"], ToolCallDraft())
        draft.tool_call_id = str(delta.get("id") or draft.tool_call_id)
        function = delta.get("function")
        if isinstance(function, dict):
            draft.name = str(function.get("name") or draft.name)
            if isinstance(function.get("arguments"), str):
                draft.arguments.append(function["arguments"])


def _arguments(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tool_pieces(draft: ToolCallDraft, profile: Profile) -> list[Piece]:
    """What a finished tool call means for the call, announced before and after it runs."""
    tool_call_id = draft.tool_call_id or f"call_{uuid.uuid4().hex}"
    arguments = "".join(draft.arguments) or "{}"
    args = _arguments(arguments)
    message = str(args.get("message") or "")
    started = ToolStarted(tool_call_id, draft.name, arguments)
    if draft.name == "end_call":
        finished = ToolFinished(tool_call_id, "Call ended.", True)
        return [started, finished, Speak(message or profile.closing_line), EndCall()]
    if draft.name == "transfer_call" and profile.transfer_number:
        finished = ToolFinished(tool_call_id, "Transferring the caller.", True)
        return [started, finished, Speak(message), Transfer(profile.transfer_number)]
    digit = str(args.get("digit") or "")
    if draft.name == "press_digit" and is_digit(digit):
        return [started, ToolFinished(tool_call_id, f"Pressed {digit}.", True), PressDigit(digit)]
    return [started, ToolFinished(tool_call_id, "Not available.", False)]


async def open_stream(client: AsyncOpenAI, body: dict[str, Any]) -> AsyncStream[object]:
    """POST a streamed chat completion; the chunks come back as plain JSON objects.

    The SDK's own ``chat.completions.create`` first walks the whole request through its
    TypedDict transform and then builds a pydantic model per chunk. Both cost CPU on the
    event loop that also answers every other call's pings, and the transform grows with
    the transcript (measured: ~4 ms a request at 30 turns). Our body is plain JSON
    already, so it goes out through the SDK's generic ``post`` instead: same client,
    connection pool, auth, timeout and error mapping, none of that work.
    """
    return await client.post(
        "/chat/completions",
        body=body,
        cast_to=object,
        stream=True,
        stream_cls=AsyncStream[object],
    )


def completions_url(profile: Profile) -> str:
    base_url = profile.base_url or settings.OPENAI_BASE_URL or DEFAULT_BASE_URL
    return f"{base_url.rstrip('/')}/chat/completions"


@functools.lru_cache(maxsize=64)
def behind_proxy(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (read once per URL)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxied = bool(proxies.get(parts.scheme) or proxies.get("all"))
    return proxied and not urllib.request.proxy_bypass(parts.hostname or "")


def prepare(profile: Profile) -> None:
    """Build what the first answer would otherwise build, while the call is being greeted:
    the TLS context (loading the CA bundle, ~20 ms once) and a connection to the model, or
    the SDK client when a proxy sends requests through the SDK."""
    url = completions_url(profile)
    if behind_proxy(url):
        client_for(profile)
    else:
        upstream_pool.warm(url, tls=_tls_context() if url.startswith("https:") else None)


def request_headers(profile: Profile) -> dict[str, str]:
    """What the openai SDK would send besides the body: the key, organization and project."""
    headers = {"User-Agent": "retellhub"}
    api_key = api_key_for(profile)
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    for name, variable in (
        ("OpenAI-Organization", "OPENAI_ORG_ID"),
        ("OpenAI-Project", "OPENAI_PROJECT_ID"),
    ):
        if os.environ.get(variable):
            headers[name] = os.environ[variable]
    return headers


async def chat_chunks(profile: Profile, body: dict[str, Any]) -> AsyncGenerator[object, None]:
    """The streamed ``chat.completion.chunk`` objects, as plain JSON values."""
    url = completions_url(profile)
    if behind_proxy(url):
        async for chunk in sdk_chunks(profile, body):
            yield chunk
        return
    events = post_events(
        url,
        headers=request_headers(profile),
        body=fastjson.dumps(body),
        tls=_tls_context() if url.startswith("https:") else None,
        last_event=END_OF_STREAM,
    )
    async with aclosing(events):
        async for data in events:
            chunk = fastjson.loads(data)
            if isinstance(chunk, dict) and chunk.get("error"):
                # What the SDK raises as APIError: the endpoint failed mid-stream.
                raise UpstreamError("the endpoint sent an error chunk")
            yield chunk


async def sdk_chunks(profile: Profile, body: dict[str, Any]) -> AsyncGenerator[object, None]:
    stream = await open_stream(client_for(profile), body)
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.close()


class OpenAIResponder:
    async def answer(self, context: AnswerContext) -> AsyncGenerator[Piece, None]:
        profile = context.profile
        if context.reminder and profile.reminder_line:
            yield Speak(render(profile.reminder_line, context.variables))
            return
        drafts: dict[int, ToolCallDraft] = {}
        # Also on cancellation: closing the stream closes its connection, which is how
        # the endpoint learns to stop generating.
        async with aclosing(chat_chunks(profile, request_options(context))) as chunks:
            async for chunk in chunks:
                delta = _delta(chunk)
                if isinstance(delta.get("content"), str) and delta["content"]:
                    yield Speak(delta["content"])
                _collect_tool_calls(drafts, delta.get("tool_calls"))
        for index in sorted(drafts):
            for piece in tool_pieces(drafts[index], profile):
                yield piece
