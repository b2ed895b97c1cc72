"""The boundary between Retell's JSON and our code.

``parse_webhook`` turns a verified body into a typed :class:`WebhookEvent`;
``call_fields`` turns a call object (current or legacy shape, see retell-protocol.md C)
into the values of ``Call``'s columns. Unknown keys are ignored and values of the wrong
type are dropped rather than rejected: Retell adds fields over time, and a delivery we
cannot fully read is still evidence worth keeping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import msgspec

from retellhub import fastjson

PayloadKey = Literal["call", "data"]


class PayloadError(ValueError):
    """Signed but unusable input; the message is safe to send back to the caller."""


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    event: str
    call_id: str
    call: dict[str, Any]
    payload_key: PayloadKey
    # False when ``call`` holds only what the merge reads (``parse_webhook_for_merge``):
    # then it is not the delivery's call object, and must not be kept as its payload.
    complete: bool = True


def parse_webhook(body: bytes) -> WebhookEvent:
    document = _json_object(body)
    event = _event_name(document.get("event"))
    call, key = _call_object(document)
    return WebhookEvent(event=event, call_id=_call_id(call), call=call, payload_key=key)


def _event_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise PayloadError("Missing 'event': a non-empty string is required.")
    return value


def _call_id(call: Mapping[str, Any]) -> str:
    call_id = call.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise PayloadError("Missing 'call_id': the call object needs a non-empty string id.")
    if len(call_id) > 128:
        raise PayloadError("'call_id' is longer than 128 characters.")
    return call_id


# --- What the merge reads, without building the rest ---------------------------------------
# A call object's structured transcript carries every word with its timings: two thirds of
# a delivery's bytes, and of orjson's time, and then thousands of small objects to free.
# The webhook's writer reads none of it, only how many turns there are (merge.py), and
# stores the body as received. msgspec checks the whole document but builds only the
# fields declared here; keys it is not asked for, and every key of a turn, it skips.


class _Turn(msgspec.Struct):
    """A transcript turn, counted: none of its keys is read."""


# The transcript documents, of which only the turns are counted. The other keys the merge
# reads, ``MERGE_KEYS``, are found from ``call_fields`` below.
TRANSCRIPT_KEYS = ("transcript_object", "transcript_with_tool_calls")
_UNSET = msgspec.UNSET


def _merge_decoder(keys: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    call = msgspec.defstruct(
        "_MergeCall",
        [(key, Any, _UNSET) for key in keys]
        + [(key, list[_Turn] | None, _UNSET) for key in TRANSCRIPT_KEYS],
    )
    envelope = msgspec.defstruct(
        "_MergeEnvelope",
        [("event", Any, _UNSET), ("call", call | None, _UNSET), ("data", call | None, _UNSET)],
    )
    return msgspec.json.Decoder(envelope)


def parse_webhook_for_merge(body: bytes) -> WebhookEvent:
    """``parse_webhook``, with ``call`` holding only what the merge reads: the keys of
    ``MERGE_KEYS`` and the transcript documents' turns, each an empty placeholder
    (``complete`` is False). It refuses what ``parse_webhook`` refuses, in the same words. A
    body msgspec cannot read as such (NaN, a lone surrogate, a transcript that is not a list
    of objects) goes to ``parse_webhook``, which returns it whole or refuses it.
    """
    try:
        envelope: Any = _MERGE_DECODER.decode(body)
    except msgspec.DecodeError:  # ValidationError is one too
        return parse_webhook(body)
    candidates: tuple[tuple[PayloadKey, Any], ...] = (
        ("call", envelope.call),
        ("data", envelope.data),
    )
    for key, found in candidates:
        if found is not None and found is not _UNSET:
            call = {
                name: value
                for name in (*MERGE_KEYS, *TRANSCRIPT_KEYS)
                if (value := getattr(found, name)) is not _UNSET
            }
            return WebhookEvent(
                event=_event_name(envelope.event),  # checked first, as parse_webhook does
                call_id=_call_id(call),
                call=call,
                payload_key=key,
                complete=False,
            )
    return parse_webhook(body)  # no call object: refused, in parse_webhook's words


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = fastjson.loads(body)
    except ValueError:  # UnicodeDecodeError is one too
        raise PayloadError("Body is not valid UTF-8 JSON.") from None
    if not isinstance(document, dict):
        raise PayloadError("Body must be a JSON object.")
    return document


def _call_object(document: dict[str, Any]) -> tuple[dict[str, Any], PayloadKey]:
    # Current deliveries carry the call under "call"; Retell's own demos still read the
    # legacy "data" key, so setups built on them keep working.
    for key in ("call", "data"):
        value = document.get(key)
        if isinstance(value, dict):
            return value, key
    raise PayloadError("Missing call object: expected an object under 'call' (or legacy 'data').")


def ms_to_datetime(value: object) -> datetime | None:
    """Retell's millisecond epoch integers as aware UTC datetimes; anything else is None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _str(value: object, limit: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:limit] if limit else value


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _bool(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _dict(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: object) -> list[Any] | None:
    return value if isinstance(value, list) else None


def _cost(value: object) -> Decimal | None:
    cost = value.get("combined_cost") if isinstance(value, dict) else None
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    try:
        return Decimal(str(cost)).quantize(Decimal("0.0001"))
    except InvalidOperation:
        return None


def _latency_p50(latency: object, name: str) -> float | None:
    figures = latency.get(name) if isinstance(latency, dict) else None
    p50 = figures.get("p50") if isinstance(figures, dict) else None
    if isinstance(p50, bool) or not isinstance(p50, int | float):
        return None
    return float(p50)


def call_fields(call: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for ``Call`` found in ``call``; absent or ill-typed keys are left out."""
    analysis = _dict(call.get("call_analysis")) or {}
    latency = call.get("latency")
    fields: dict[str, Any] = {
        "agent_id": _str(call.get("agent_id"), 128),
        "agent_version": _int(call.get("agent_version")),
        "agent_name": _str(call.get("agent_name"), 255),
        "call_type": _str(call.get("call_type"), 32),
        "direction": _str(call.get("direction"), 16),
        "from_number": _str(call.get("from_number"), 64),
        "to_number": _str(call.get("to_number"), 64),
        "status": _str(call.get("call_status"), 32),
        "started_at": ms_to_datetime(call.get("start_timestamp")),
        "ended_at": ms_to_datetime(call.get("end_timestamp")),
        "duration_ms": _int(call.get("duration_ms")),
        "disconnection_reason": _str(call.get("disconnection_reason"), 64),
        "transcript": _str(call.get("transcript")),
        "transcript_object": _list(call.get("transcript_object")),
        "transcript_with_tool_calls": _list(call.get("transcript_with_tool_calls")),
        "recording_url": _str(call.get("recording_url"), 2048),
        "public_log_url": _str(call.get("public_log_url"), 2048),
        "metadata": _dict(call.get("metadata")),
        "dynamic_variables": _dict(call.get("retell_llm_dynamic_variables")),
        "collected_dynamic_variables": _dict(call.get("collected_dynamic_variables")),
        "call_summary": _str(analysis.get("call_summary")),
        "user_sentiment": _str(analysis.get("user_sentiment"), 16),
        "call_successful": _bool(analysis.get("call_successful")),
        "in_voicemail": _bool(analysis.get("in_voicemail")),
        "custom_analysis_data": _dict(analysis.get("custom_analysis_data")),
        "combined_cost": _cost(call.get("call_cost")),
        "latency": _dict(latency),
        "e2e_latency_p50_ms": _latency_p50(latency, "e2e"),
        "llm_latency_p50_ms": _latency_p50(latency, "llm"),
    }
    return {name: value for name, value in fields.items() if value is not None}


class _KeysRead(dict[str, Any]):
    """An empty call object that notes the keys looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []

    def get(self, key: str, default: Any = None) -> Any:
        self.read.append(key)
        return default


def _keys_call_fields_reads() -> tuple[str, ...]:
    # Found by running it rather than listed again, so a key it learns to read is one the
    # merge's parse declares. It looks every key up whatever the others hold (the tests
    # check that on a full call object too).
    call = _KeysRead()
    call_fields(call)
    return ("call_id", *(key for key in call.read if key not in TRANSCRIPT_KEYS))


MERGE_KEYS = _keys_call_fields_reads()
_MERGE_DECODER = _merge_decoder(MERGE_KEYS)
