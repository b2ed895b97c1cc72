"""Helpers that play Retell's side in tests: fixtures, signed bodies, headers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from calls import signing

FIXTURES = Path(__file__).parent / "fixtures" / "retell"
PRIMARY_KEY = "key_test_primary_4f9a"
SECONDARY_KEY = "key_test_rotated_77c1"
TEST_KEYS = [PRIMARY_KEY, SECONDARY_KEY]


def fixture_bytes(name: str) -> bytes:
    """A captured-style delivery exactly as it would arrive on the wire."""
    return (FIXTURES / f"{name}.json").read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads(fixture_bytes(name))


def compact(document: dict[str, Any]) -> bytes:
    """JSON the way Retell emits it: compact, non-ASCII left as is."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def now_ms() -> int:
    return int(time.time() * 1000)


def signature(body: bytes, *, key: str = PRIMARY_KEY, timestamp_ms: int | None = None) -> str:
    return signing.sign(body, key, now_ms() if timestamp_ms is None else timestamp_ms)


def with_call_id(document: dict[str, Any], call_id: str) -> dict[str, Any]:
    key = "call" if "call" in document else "data"
    return {**document, key: {**document[key], "call_id": call_id}}


def fixture_with(name: str, **changes: Any) -> bytes:
    """A fixture delivery with some call fields changed (``call_analysis`` merged)."""
    document = fixture_json(name)
    call = document["call"]
    analysis = {**call.get("call_analysis", {}), **changes.pop("call_analysis", {})}
    document["call"] = {**call, **changes, **({"call_analysis": analysis} if analysis else {})}
    return compact(document)
