"""Retell's ``X-Retell-Signature`` over the exact raw request bytes.

Header ``v=<ms>,d=<hex>``: HMAC-SHA256 keyed with a Retell API key over the raw body
followed by the decimal timestamp, accepted within five minutes either way (inclusive),
as retell-sdk 6.2.13's ``verify`` does. Pure functions, no Django: the view, the simulator
and the benchmarks share them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

TOLERANCE_MS = 5 * 60 * 1000
HEADER_NAME = "X-Retell-Signature"
_HEADER = re.compile(r"v=(\d{1,19}),d=([0-9a-f]{64})")


class SignatureError(Exception):
    """Why a delivery was refused: a short machine-readable reason, never the body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SignatureMatch:
    key_index: int
    key_fingerprint: str
    timestamp_ms: int


@lru_cache(maxsize=64)
def key_fingerprint(key: str) -> str:
    """A short, non-reversible name for a key, safe to store and log."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def digest(body: bytes, key: str, timestamp_ms: int) -> str:
    mac = _keyed(key).copy()
    mac.update(body)  # not body + timestamp: that would copy the body first
    mac.update(str(timestamp_ms).encode("ascii"))
    return mac.hexdigest()


@lru_cache(maxsize=64)
def _keyed(key: str) -> hmac.HMAC:
    # An HMAC's set-up with its key (two hash blocks and the objects) is the same for every
    # delivery: done once per key, then copied.
    return hmac.new(key.encode("utf-8"), digestmod=hashlib.sha256)


def sign(body: bytes, key: str, timestamp_ms: int) -> str:
    """The header value Retell would send for ``body`` at ``timestamp_ms``."""
    return f"v={timestamp_ms},d={digest(body, key, timestamp_ms)}"


def verify(*, body: bytes, header: str | None, keys: Sequence[str], now_ms: int) -> SignatureMatch:
    """Return which key signed ``body``, or raise :class:`SignatureError`."""
    if not header:
        raise SignatureError("missing_header")
    parsed = _HEADER.fullmatch(header)
    if parsed is None:
        raise SignatureError("malformed_header")
    timestamp_ms, received = int(parsed.group(1)), parsed.group(2)
    # Checked before the HMAC, like the SDK: a replayed old delivery is refused outright.
    if now_ms - timestamp_ms > TOLERANCE_MS:
        raise SignatureError("stale_timestamp")
    if timestamp_ms - now_ms > TOLERANCE_MS:
        raise SignatureError("future_timestamp")
    if not keys:
        raise SignatureError("no_key_configured")
    match: SignatureMatch | None = None
    # Every key is tried so the time taken does not say which one matched.
    for index, key in enumerate(keys):
        if hmac.compare_digest(digest(body, key, timestamp_ms), received) and match is None:
            match = SignatureMatch(index, key_fingerprint(key), timestamp_ms)
    if match is None:
        raise SignatureError("bad_digest")
    return match
