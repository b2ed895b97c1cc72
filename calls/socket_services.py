"""Writes for the call socket (calls/llm/records.py): what it observes of a call, merged as
the webhooks are (calls/services.py), and its session kept as a CallEvent.

The socket observes a call too: call_details and the live transcript. They go through the
same versioned merge as the webhooks under their own rank (merge.EVENT_RANK), so the
final Call still does not depend on what arrived when.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction

from calls.merge import Observation, observation_version
from calls.models import Call, CallEvent, EventSource
from calls.services import call_lock_or_create, call_observe, transcript_held

SOCKET_OBSERVATION = "llm_socket"
SOCKET_SESSION_EVENT = "llm_session"


def _canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def _socket_observation(*, fields: Mapping[str, Any]) -> Observation:
    # Hash of the content, not of the arrival, so equal observations tie-break equally.
    digest = hashlib.sha256(_canonical_json(fields)).hexdigest()
    version = observation_version(
        event=SOCKET_OBSERVATION,
        call={"transcript_object": fields.get("transcript_object")},
        body_sha256=digest,
    )
    return Observation(
        event=SOCKET_OBSERVATION,
        fields=transcript_held(fields, by=None),
        call_object_event=None,
        version=version,
    )


@transaction.atomic
def call_socket_observe(*, call_id: str, fields: Mapping[str, Any], seen_at: datetime) -> Call:
    """Merge what the socket learnt (column values) into the call, creating it if new."""
    call = call_lock_or_create(call_id=call_id)
    call_observe(call=call, observation=_socket_observation(fields=fields), seen_at=seen_at)
    return call


@transaction.atomic
def call_socket_session_record(
    *, call_id: str, summary: Mapping[str, Any], fields: Mapping[str, Any], seen_at: datetime
) -> CallEvent:
    """Store a finished socket session as a CallEvent, with its last observation merged."""
    raw_body = _canonical_json(summary)
    call = call_lock_or_create(call_id=call_id)
    if fields:
        call_observe(call=call, observation=_socket_observation(fields=fields), seen_at=seen_at)
    return CallEvent.objects.create(
        call=call,
        event=SOCKET_SESSION_EVENT,
        source=EventSource.LLM_SOCKET,
        raw_body=raw_body.decode("utf-8"),
        body_sha256=hashlib.sha256(raw_body).hexdigest(),
        payload_key="",  # the body is the summary itself, not an envelope around it
        first_received_at=seen_at,
        last_received_at=seen_at,
    )
