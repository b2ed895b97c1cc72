"""Order-free merging of everything learnt about one call.

Retell retries deliveries and does not guarantee their order (retell-protocol.md A.2), so
the merged ``Call`` must not depend on arrival order. Each observation gets a *version*, a
JSON list compared lexicographically: how far along the call's lifecycle its event is,
then how much transcript it carries, then its body hash as a final tie-break. Every
column keeps the value from the highest version that carried it, and remembers that
version. A per-field maximum over a total order is commutative, associative and
idempotent, so any permutation of the same deliveries, with any duplicates, yields the
same state; and an older event can never overwrite a newer one or blank a field it lacks
(``call_ended`` carries no analysis and so cannot erase ``call_analyzed``'s).

The full call object is not copied into the call: the merge picks, by the same rule, the
stored event that carried the most advanced one (``Call.call_object_event``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calls.models import CallEvent

# Lifecycle rank of each event. Unknown events rank between start and end: they may fill
# gaps but never override the end-of-call data.
EVENT_RANK: dict[str, int] = {
    "call_started": 10,
    "transcript_updated": 20,
    # The call socket's own observations (call_details, the live transcript): as live as
    # transcript_updated, so the longer transcript wins, and below call_ended, so the
    # webhooks' final data always does.
    "llm_socket": 20,
    "transfer_started": 30,
    "transfer_bridged": 31,
    "transfer_cancelled": 32,
    "transfer_ended": 33,
    "call_ended": 40,
    # A snapshot from Retell's API (manage.py sync_calls, only of finished calls): newer than
    # call_ended, whose data it contains, but below call_analyzed, whose analysis stays the
    # authoritative one. It fills what missed webhooks left out.
    "retell_api": 45,
    "call_analyzed": 50,
}
UNKNOWN_EVENT_RANK = 15

# Status only moves forward: the terminal states outrank the live ones whatever arrives last.
STATUS_RANK: dict[str, int] = {
    "registered": 0,
    "ongoing": 1,
    "not_connected": 2,
    "ended": 3,
    "error": 4,
}
UNKNOWN_STATUS_RANK = -1

# Columns that only ever change together, under one version: the structured transcript is
# either a reference to the event that carried it or held inline (calls/models.py), and an
# observation sets all three at once, so every order leaves them from the same observation.
SHARED_VERSION = {
    "transcript_with_tool_calls": "transcript_object",
    "transcript_event": "transcript_object",
}

# Bookkeeping keys stored beside the columns in ``Call.field_versions``: the version of the
# call object that ``Call.call_object_event`` points at.
CALL_OBJECT = "call_object"
# The column that refers to the event whose call object won.
CALL_OBJECT_EVENT = "call_object_event"


@dataclass(frozen=True, slots=True)
class Observation:
    event: str
    fields: Mapping[str, Any]
    # The stored event whose full call object this is. None for observations that are not
    # one (the socket's live transcript): they fill columns but leave the call's call
    # object (``Call.call_object_event``) and ``last_event`` alone.
    call_object_event: CallEvent | None
    version: list[Any]


@dataclass(slots=True)
class MergeResult:
    updates: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, list[Any]] = field(default_factory=dict)


def observation_version(*, event: str, call: Mapping[str, Any], body_sha256: str) -> list[Any]:
    transcript = call.get("transcript_object")
    turns = len(transcript) if isinstance(transcript, list) else 0
    return [EVENT_RANK.get(event, UNKNOWN_EVENT_RANK), turns, body_sha256]


def _field_version(name: str, value: Any, version: list[Any]) -> list[Any]:
    if name == "status":
        return [STATUS_RANK.get(value, UNKNOWN_STATUS_RANK), *version]
    return version


def merge(versions: Mapping[str, list[Any]], observation: Observation) -> MergeResult:
    """What changes when ``observation`` meets a call whose columns have ``versions``."""
    result = MergeResult()
    for name, value in observation.fields.items():
        candidate = _field_version(name, value, observation.version)
        key = SHARED_VERSION.get(name, name)
        current = versions.get(key)
        if current is None or candidate > current:
            result.updates[name] = value
            result.versions[key] = candidate
    current = versions.get(CALL_OBJECT)
    if observation.call_object_event is None:
        return result
    if current is None or observation.version > current:
        result.updates[CALL_OBJECT_EVENT] = observation.call_object_event
        result.updates["last_event"] = observation.event
        result.versions[CALL_OBJECT] = observation.version
    return result
