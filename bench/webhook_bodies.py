"""Realistic Retell webhook bodies for the load benchmark (bench/webhook_load.py).

``render_call`` makes the three bodies of one call (``call_started``, ``call_ended``,
``call_analyzed``) with ``CALL_ID_SLOT`` where the call id goes: a multilingual dialogue
grown until the body lands on a random size of 5-20 KB, word timings, latency figures,
costs and an analysis, shaped as Retell sends them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import time
from collections.abc import Iterator
from typing import Any

from bench.calldata import CDN, call_cost, encode_json, phone_number, transcript_text, utterance

CALL_ID_SLOT = "@@CALL_ID@@"
EVENTS = ("call_started", "call_ended", "call_analyzed")
MAX_RUN_ID = 24
MAX_CALL_ID = len("call_bench__") + MAX_RUN_ID + 9  # 9 digits: > 10**8 requests / 3
MIN_BODY_BYTES = 5_300  # > 5 KiB
# Templates hold 3 slots per body; <= 20 kB once they are replaced by the longest ids.
MAX_TEMPLATE_BYTES = 20_000 - 3 * (MAX_CALL_ID - len(CALL_ID_SLOT))

Json = dict[str, Any]


CUSTOMERS = (
    "José García", "Zoë Müller", "李雷", "Amélie Dubois", "Søren Kierkegaard",
    "Małgorzata Nowak", "Nguyễn Văn An", "Björn Ångström", "Priya Raman", "Олег Петров",
    "Chloé Martin", "Ahmed Al-Farsi", "Siobhán O'Brien", "韩梅梅", "John Smith",
)  # fmt: skip
AGENTS = (
    ("Front Desk Receptionist", "Sunrise Dental"),
    ("Appointment Scheduler", "Lakeside Physiotherapy"),
    ("Order Status Assistant", "Café Olé Roasters"),
    ("Insurance Intake", "Northwind Mutual"),
)
# Ordered (agent, user) exchanges; long calls loop over all but the greeting.
DIALOGUE = (
    (
        "Thanks for calling {org}, this is the virtual assistant. How can I help you today?",
        "Hi, yes, I'd like to book an appointment, my name is {name}.",
    ),
    (
        "Sure, {name}, I can help with that. Could you confirm your date of birth for me?",
        "It's March fourteenth, nineteen eighty-seven.",
    ),
    (
        "Thank you. I see an opening on {day} at {hour}. Would that work for you?",
        "Hmm, {day} is a bit tricky for me, do you have anything in the afternoon?",
    ),
    (
        "I understand. Let me check what we have available later in the week.",
        "Sorry, could you repeat that? The line cut out for a second.",
    ),
    (
        "Of course. I have {day} at {hour} or Friday morning. Which do you prefer?",
        "The first one, please. Could you also check whether my insurance is on file?",
    ),
    (
        "Your insurance is on file. Just to confirm, is this number the best way to reach you?",
        "Yes, that's right, this number is fine.",
    ),
    (
        "Great, I've booked that for you. You'll get a text confirmation shortly. "
        "Is there anything else I can help you with, {name}?",
        "No, that's everything. Thanks, bye!",
    ),
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
HOURS = ("9:30 AM", "11 AM", "1:15 PM", "3:45 PM", "4:30 PM")
SENTIMENTS = ("Positive", "Negative", "Neutral", "Unknown")


def _dialogue(rng: random.Random, fill: dict[str, str]) -> Iterator[Json]:
    """Endless alternating agent/user turns with word-level timings."""
    clock = rng.uniform(0.3, 1.2)
    for index in itertools.count():
        exchange = DIALOGUE[0] if index == 0 else DIALOGUE[1 + (index - 1) % (len(DIALOGUE) - 1)]
        for role, line in zip(("agent", "user"), exchange, strict=True):
            turn = utterance(rng, role, line.format(**fill), clock)
            yield turn
            clock = turn["words"][-1]["end"] + rng.uniform(0.4, 1.5)


def _turn_cost(turn: Json) -> int:
    """Bytes a turn adds: object entry + comma, plus its text line ("\n" escapes to 2 bytes)."""
    return _json_size(turn) + 1 + len(f"{turn['role']}: {turn['content']}".encode()) + 2


def _json_size(value: object) -> int:
    return len(encode_json(value))


def _latency_block(rng: random.Random, base_ms: float, turns: int) -> Json:
    samples = sorted(base_ms * rng.lognormvariate(0, 0.35) for _ in range(max(turns, 1)))
    return {
        "p50": round(samples[len(samples) // 2], 1),
        "p90": round(samples[int(len(samples) * 0.9)], 1),
        "p99": round(samples[int(len(samples) * 0.99)], 1),
        "max": round(samples[-1], 1),
        "min": round(samples[0], 1),
        "num": len(samples),
    }


def _analysis(rng: random.Random, fill: dict[str, str]) -> Json:
    booked = rng.random() < 0.6
    return {
        "call_summary": (
            f"{fill['name']} called {fill['org']} to book an appointment. "
            + (f"Booked for {fill['day']} at {fill['hour']}." if booked else "Nothing booked.")
        ),
        "user_sentiment": rng.choice(SENTIMENTS),
        "call_successful": booked,
        "in_voicemail": False,
        "custom_analysis_data": {
            "appointment_booked": booked,
            "appointment_slot": f"{fill['day']} {fill['hour']}" if booked else None,
            "customer_name": fill["name"],
            "follow_up_required": rng.random() < 0.3,
            "reason_for_call": rng.choice(("booking", "reschedule", "billing", "insurance")),
        },
    }


def _base_call(rng: random.Random, run_id: str, fill: dict[str, str], start_ms: int) -> Json:
    agent_name = fill["agent"]
    customer, business = phone_number(rng), phone_number(rng)
    inbound = rng.random() < 0.7
    return {
        "call_id": CALL_ID_SLOT,
        "agent_id": "agent_" + hashlib.sha256(agent_name.encode()).hexdigest()[:24],
        "agent_version": rng.randint(1, 12),
        "agent_name": agent_name,
        "call_type": "phone_call",
        "direction": "inbound" if inbound else "outbound",
        "from_number": customer if inbound else business,
        "to_number": business if inbound else customer,
        "call_status": "ongoing",
        "start_timestamp": start_ms,
        "metadata": {"bench_run": run_id, "crm_contact_id": f"c_{rng.randrange(10**8):08d}"},
        "retell_llm_dynamic_variables": {
            "customer_name": fill["name"],
            "clinic_name": fill["org"],
            "preferred_day": fill["day"],
        },
        "opt_out_sensitive_data_storage": False,
    }


def _ended_call(rng: random.Random, call: Json, turns: list[Json], reason: str) -> Json:
    duration_ms = int((turns[-1]["words"][-1]["end"] + rng.uniform(0.5, 3.0)) * 1000)
    exchanges = len(turns) // 2
    return dict(
        call,
        call_status="ended",
        transcript=transcript_text(turns),
        transcript_object=turns,
        recording_url=f"{CDN}/{CALL_ID_SLOT}/recording.wav",
        public_log_url=f"{CDN}/{CALL_ID_SLOT}/public.log",
        disconnection_reason=reason,
        end_timestamp=call["start_timestamp"] + duration_ms,
        duration_ms=duration_ms,
        call_cost=call_cost(rng, duration_ms / 1000),
        latency={
            "e2e": _latency_block(rng, 900, exchanges),
            "llm": _latency_block(rng, 450, exchanges),
        },
    )


def _fill(rng: random.Random) -> dict[str, str]:
    agent, org = rng.choice(AGENTS)
    return {
        "name": rng.choice(CUSTOMERS), "org": org, "agent": agent,
        "day": rng.choice(DAYS), "hour": rng.choice(HOURS),
    }  # fmt: skip


def render_call(
    rng: random.Random, run_id: str, *, payload_key: str = "call"
) -> tuple[bytes, bytes, bytes]:
    """The three webhook bodies of one call, with ``CALL_ID_SLOT`` where the id goes.

    The transcript is grown until the ended/analyzed bodies land on a random size in
    [MIN_BODY_BYTES, MAX_TEMPLATE_BYTES]; call_started carries at most the greeting.
    ``payload_key="data"`` gives the legacy shape (what Retell's own demo reads).
    """
    fill = _fill(rng)
    start_ms = time.time_ns() // 1_000_000 - rng.randrange(60_000, 3_600_000)
    call = _base_call(rng, run_id, fill, start_ms)
    analysis = _analysis(rng, fill)
    reason = rng.choice(("user_hangup", "agent_hangup", "agent_hangup"))
    dialogue = _dialogue(rng, fill)
    turns = [next(dialogue), next(dialogue)]

    # Grow on an estimate (re-encoding per turn would be quadratic), then fix up exactly.
    target = rng.randint(MIN_BODY_BYTES, MAX_TEMPLATE_BYTES - _json_size(analysis))
    size = _json_size({"event": "call_ended", "call": _ended_call(rng, call, turns, reason)})
    while size < target:
        turns.append(next(dialogue))
        size += _turn_cost(turns[-1])
    for _ in range(100):
        ended = _ended_call(rng, call, turns, reason)
        ended_body = encode_json({"event": "call_ended", "call": ended})
        analyzed_body = encode_json(
            {"event": "call_analyzed", "call": {**ended, "call_analysis": analysis}}
        )
        if len(analyzed_body) > MAX_TEMPLATE_BYTES and len(turns) > 2:
            turns.pop()
        elif len(ended_body) < MIN_BODY_BYTES:
            turns.append(next(dialogue))
        else:
            break
    else:
        raise RuntimeError("could not fit the transcript into the body size range")

    opening = turns[: rng.randint(0, 2)]
    started = dict(call, transcript=transcript_text(opening), transcript_object=opening)
    bodies = (encode_json({"event": "call_started", "call": started}), ended_body, analyzed_body)
    if payload_key == "call":
        return bodies
    # Same length either way ("call" and "data" are both four letters), so sizes hold.
    first, second, third = (_with_payload_key(body, payload_key) for body in bodies)
    return first, second, third


PAYLOAD_KEYS = ("call", "data")


def _with_payload_key(body: bytes, payload_key: str) -> bytes:
    value = json.loads(body)
    return encode_json({"event": value["event"], payload_key: value["call"]})
