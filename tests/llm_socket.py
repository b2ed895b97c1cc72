"""Helpers that play Retell's side of the call socket in tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from calls.llm.protocol import Utterance

CALL_ID = "call_socket_test_0001"


def request(response_id: int, said: str, *, kind: str = "response_required") -> dict[str, Any]:
    """What Retell sends when it wants the agent's next words after the caller ``said``."""
    return {"interaction_type": kind, "response_id": response_id, "transcript": transcript(said)}


def transcript(*user_lines: str) -> list[Utterance]:
    lines: list[Utterance] = [{"role": "agent", "content": "Hello! How can I help?"}]
    for line in user_lines:
        lines.append({"role": "user", "content": line})
    return lines


def update(said: str) -> dict[str, Any]:
    return {
        "interaction_type": "update_only",
        "transcript": transcript(said),
        "turntaking": "user_turn",
    }


def ping(timestamp: int = 1_700_000_000_123) -> dict[str, Any]:
    return {"interaction_type": "ping_pong", "timestamp": timestamp}


def call_details(*, agent_id: str = "agent_test", **variables: str) -> dict[str, Any]:
    return {
        "interaction_type": "call_details",
        "call": {
            "call_id": CALL_ID,
            "agent_id": agent_id,
            "call_type": "phone_call",
            "call_status": "registered",
            "direction": "inbound",
            "from_number": "+15550001111",
            "to_number": "+15550002222",
            "retell_llm_dynamic_variables": variables,
        },
    }


def answer_text(frames: list[dict[str, Any]], response_id: int) -> str:
    return "".join(
        frame["content"]
        for frame in frames
        if frame.get("response_type") == "response" and frame["response_id"] == response_id
    )


def is_complete(frame: dict[str, Any], response_id: int) -> bool:
    return (
        frame.get("response_type") == "response"
        and frame.get("response_id") == response_id
        and frame.get("content_complete") is True
    )


def profile_file(directory: Path, **overrides: Any) -> str:
    """A default-profile JSON file: the shipped default with ``overrides`` applied."""
    base = json.loads(Path(default_profile_path()).read_text())
    path = directory / f"profile-{len(list(directory.glob('profile-*')))}.json"
    path.write_text(json.dumps({**base, **overrides}))
    return str(path)


def default_profile_path() -> str:
    return str(
        Path(__file__).resolve().parent.parent / "config" / "agent-profiles" / "default.json"
    )
