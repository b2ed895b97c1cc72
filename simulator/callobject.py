"""The call object Retell sends, at each stage of a simulated call (retell-protocol.md C).

``call_details`` on the socket carries the registered call; ``call_started`` the ongoing
one; ``call_ended`` everything but the analysis, with the transcript the conversation
actually produced and latency figures from what was measured; ``call_analyzed`` adds the
scenario's analysis.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench._common import percentile
from bench.calldata import CDN, call_cost, encode_json, transcript_text

Json = dict[str, Any]

# What Retell puts in the call object when the call is registered, before it starts.
REGISTERED_FIELDS = (
    "agent_id", "agent_version", "agent_name", "call_type", "direction", "from_number",
    "to_number", "metadata", "retell_llm_dynamic_variables", "data_storage_setting",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CallIdentity:
    """The scenario's call data, fixed for one simulated call."""

    call_id: str
    fields: Json
    start_ms: int


def registered_call(identity: CallIdentity) -> Json:
    fields = {key: identity.fields[key] for key in REGISTERED_FIELDS if key in identity.fields}
    return {"call_id": identity.call_id, **fields, "call_status": "registered"}


def started_call(identity: CallIdentity) -> Json:
    return {
        **registered_call(identity),
        "call_status": "ongoing",
        "start_timestamp": identity.start_ms,
    }


@dataclass(frozen=True, slots=True)
class CallEnding:
    """How and when the call ended, and what was measured on the way."""

    end_ms: int
    reason: str
    transcript: Sequence[Json]
    first_frame_ms: Sequence[float]
    transfer_destination: str | None = None


def ended_call(identity: CallIdentity, ending: CallEnding, rng: random.Random) -> Json:
    turns = list(ending.transcript)
    duration_ms = max(ending.end_ms - identity.start_ms, 0)
    call: Json = {
        **started_call(identity),
        "call_status": "ended",
        "end_timestamp": ending.end_ms,
        "duration_ms": duration_ms,
        "disconnection_reason": ending.reason,
        "transcript": transcript_text(turns),
        "transcript_object": turns,
        "recording_url": f"{CDN}/{identity.call_id}/recording.wav",
        "public_log_url": f"{CDN}/{identity.call_id}/public.log",
        "call_cost": call_cost(rng, duration_ms / 1000),
    }
    if ending.first_frame_ms:
        # For a custom LLM Retell's "llm" latency is the socket round trip (D-TRBL FAQ):
        # here, request -> first content frame as the simulator measured it.
        call["latency"] = {"llm": latency_block(ending.first_frame_ms)}
    if ending.transfer_destination:
        call["transfer_destination"] = ending.transfer_destination
    return call


def analyzed_call(ended: Json, analysis: Json) -> Json:
    return {**ended, "call_analysis": analysis}


def latency_block(values_ms: Sequence[float]) -> Json:
    ordered = sorted(values_ms)
    figures = {f"p{pct}": round(percentile(ordered, pct), 1) for pct in (50, 90, 95, 99)}
    return {
        **figures,
        "max": round(ordered[-1], 1),
        "min": round(ordered[0], 1),
        "num": len(ordered),
        "values": [round(value, 1) for value in values_ms],
    }


def webhook_body(event: str, call: Json, *, key: str = "call") -> bytes:
    """A delivery body; ``key="data"`` gives the legacy shape (retell-protocol.md A.4)."""
    return encode_json({"event": event, key: call})
