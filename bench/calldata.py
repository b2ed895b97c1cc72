"""Realistic pieces of Retell's call object, shared by the webhook benchmark and the simulator.

Standard library only. Everything takes a ``random.Random`` so a seed reproduces a run.
"""

from __future__ import annotations

import json
import random
from typing import Any

Json = dict[str, Any]

# (product, cents per second) as they appear in Retell's call_cost.product_costs.
PRODUCTS = (("retell_platform", 0.07), ("elevenlabs_tts", 0.0166667), ("gpt_4o_mini", 0.006))
CDN = "https://dxc03zgurdly9.cloudfront.net"


def phone_number(rng: random.Random) -> str:
    """A North American number in the 555 range, which is never a real subscriber."""
    return f"+1555{rng.randrange(10**7):07d}"


def utterance(rng: random.Random, role: str, content: str, start: float) -> Json:
    """A transcript_object entry with word timings (seconds from call start) from ``start``."""
    words = []
    clock = start
    for word in content.split():
        end = clock + 0.08 + 0.045 * len(word) * rng.uniform(0.8, 1.3)
        words.append({"word": word, "start": round(clock, 3), "end": round(end, 3)})
        clock = end + rng.uniform(0.02, 0.12)
    return {"role": role, "content": content, "words": words}


def transcript_text(turns: list[Json]) -> str:
    """The call's plain ``transcript``: one ``Agent: ...`` / ``User: ...`` line per turn."""
    return "".join(f"{turn['role'].capitalize()}: {turn['content']}\n" for turn in turns)


def call_cost(rng: random.Random, seconds: float) -> Json:
    costs = [round(price * seconds, 4) for _, price in PRODUCTS]
    products = [
        {"product": name, "unit_price": price, "cost": cost}
        for (name, price), cost in zip(PRODUCTS, costs, strict=True)
    ]
    unit = round(sum(price for _, price in PRODUCTS) * rng.uniform(0.98, 1.02), 7)
    return {
        "product_costs": products,
        "total_duration_seconds": round(seconds, 3),
        "total_duration_unit_price": unit,
        "combined_cost": round(sum(costs), 4),
    }


def encode_json(value: object) -> bytes:
    """JSON the way Retell emits it: compact, non-ASCII characters left unescaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
