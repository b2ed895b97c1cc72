"""The merged call is the same for every order of the same deliveries, with duplicates."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from typing import Any

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls import merge
from calls.models import Call, CallEvent
from calls.payloads import parse_webhook
from calls.services import call_event_record, call_events_record
from tests import retell
from tests.merged import CALL_ID, LIFECYCLE, incoming, lifecycle_bodies, merged_state


def record(body: bytes) -> None:
    call_event_record(
        event=parse_webhook(body), raw_body=body, source_ip="100.20.5.228", key_fingerprint="k"
    )


def state_after(bodies: list[bytes], order: Iterable[int], call_id: str) -> dict[str, Any]:
    """Deliver ``bodies`` in ``order`` and read the merged call, then roll it all back."""
    with transaction.atomic():
        for index in order:
            record(bodies[index])
        state = merged_state(call_id)
        counts = sorted(CallEvent.objects.values_list("delivery_count", flat=True))
        transaction.set_rollback(True)
    return state | {"delivery_counts": counts}


deliveries = st.lists(
    st.integers(min_value=0, max_value=len(LIFECYCLE) - 1), min_size=len(LIFECYCLE), max_size=12
).filter(lambda picks: set(picks) == set(range(len(LIFECYCLE))))


@pytest.mark.django_db
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(order=deliveries)
def test_any_order_with_duplicates_gives_the_same_call(order: list[int]):
    bodies = lifecycle_bodies(CALL_ID)
    reference = state_after(bodies, range(len(LIFECYCLE)), CALL_ID)
    actual = state_after(bodies, order, CALL_ID)
    assert sum(actual.pop("delivery_counts")) == len(order)
    assert reference.pop("delivery_counts") == [1] * len(LIFECYCLE)
    assert actual == reference


@pytest.mark.django_db
def test_every_permutation_of_the_lifecycle_converges():
    bodies = lifecycle_bodies(CALL_ID)
    reference = state_after(bodies, range(len(LIFECYCLE)), CALL_ID)
    for order in itertools.permutations(range(len(LIFECYCLE))):
        assert state_after(bodies, order, CALL_ID) == reference, order


@pytest.mark.django_db
def test_the_call_object_is_the_most_advanced_events():
    bodies = lifecycle_bodies(CALL_ID)
    analyzed = bodies[LIFECYCLE.index("call_analyzed")]
    for order in ([4, 3, 0], [0, 3, 4, 1], [3, 4, 2, 4]):
        state = state_after(bodies, order, CALL_ID)
        assert state["call_object_event"] == hashlib.sha256(analyzed).hexdigest(), order
        assert state["call_object"] == json.loads(analyzed)["call"]
        assert state["last_event"] == "call_analyzed"
    state = state_after(bodies, [1, 0, 2], CALL_ID)  # without call_ended and call_analyzed
    transfer = bodies[LIFECYCLE.index("transfer_started")]
    assert state["call_object_event"] == hashlib.sha256(transfer).hexdigest()


@pytest.mark.django_db
def test_the_call_points_at_the_stored_event_itself():
    bodies = lifecycle_bodies(CALL_ID)
    record(bodies[LIFECYCLE.index("call_ended")])
    record(bodies[LIFECYCLE.index("call_started")])
    call = Call.objects.get(call_id=CALL_ID)
    assert call.call_object_event == CallEvent.objects.get(event="call_ended")
    assert call.call_object == retell.fixture_json("call_ended")["call"] | {"call_id": CALL_ID}


@pytest.mark.django_db
def test_analysis_survives_a_late_call_ended():
    bodies = lifecycle_bodies("call_late_end")
    record(bodies[LIFECYCLE.index("call_analyzed")])
    record(bodies[LIFECYCLE.index("call_ended")])
    call = Call.objects.get(call_id="call_late_end")
    assert call.user_sentiment == "Positive"
    assert call.call_summary.startswith("José Núñez moved")
    assert call.last_event == "call_analyzed"


@pytest.mark.django_db
def test_status_never_moves_back_to_ongoing():
    bodies = lifecycle_bodies("call_late_start")
    record(bodies[LIFECYCLE.index("call_ended")])
    record(bodies[LIFECYCLE.index("call_started")])
    call = Call.objects.get(call_id="call_late_start")
    assert call.status == "ended"
    assert call.started_at is not None
    assert call.ended_at is not None


@pytest.mark.django_db
def test_a_failed_dial_without_call_started_is_recorded():
    record(retell.fixture_bytes("failed_dial_call_ended"))
    call = Call.objects.get(call_id="call_failed_dial_0001")
    assert call.status == "not_connected"
    assert call.disconnection_reason == "dial_no_answer"
    assert call.is_finished


def test_versions_order_lifecycle_then_transcript_then_hash():
    call = {"transcript_object": [{"role": "user", "content": "hi"}]}
    started = merge.observation_version(event="call_started", call={}, body_sha256="f" * 64)
    updated = merge.observation_version(event="transcript_updated", call=call, body_sha256="0")
    unknown = merge.observation_version(event="call_teleported", call={}, body_sha256="0")
    assert started < unknown < updated


def test_merge_keeps_fields_a_newer_event_lacks():
    older_event, newer_event = CallEvent(body_sha256="a"), CallEvent(body_sha256="b")
    older = merge.Observation("call_started", {"from_number": "+1"}, older_event, [10, 0, "a"])
    newer = merge.Observation("call_ended", {"duration_ms": 5}, newer_event, [40, 0, "b"])
    first = merge.merge({}, newer)
    assert first.updates["call_object_event"] is newer_event
    second = merge.merge(first.versions, older)
    assert second.updates == {"from_number": "+1"}


def test_an_observation_without_a_call_object_leaves_it_alone():
    live = merge.Observation("llm_socket", {"transcript": "Hi"}, None, [20, 9, "c"])
    result = merge.merge({}, live)
    assert result.updates == {"transcript": "Hi"}
    assert merge.CALL_OBJECT not in result.versions


def state_after_batches(
    bodies: list[bytes], order: list[int], cuts: list[int], call_ids: list[str]
) -> dict[str, Any]:
    """Deliver ``bodies`` in ``order``, grouped into batches at ``cuts`` (the webhook's
    group commit), and read every call; then roll it all back."""
    bounds = [0, *sorted(set(cut % (len(order) + 1) for cut in cuts)), len(order)]
    with transaction.atomic():
        for start, end in itertools.pairwise(bounds):
            call_events_record(deliveries=[incoming(bodies[index]) for index in order[start:end]])
        state = {
            call_id: merged_state(call_id) if Call.objects.filter(call_id=call_id) else None
            for call_id in call_ids
        }
        counts = sorted(CallEvent.objects.values_list("body_sha256", "delivery_count"))
        transaction.set_rollback(True)
    return state | {"delivery_counts": counts}


two_calls = st.lists(
    st.integers(min_value=0, max_value=2 * len(LIFECYCLE) - 1), min_size=1, max_size=16
)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(order=two_calls, cuts=st.lists(st.integers(min_value=0, max_value=16), max_size=5))
def test_batches_of_any_shape_give_what_one_by_one_gives(order: list[int], cuts: list[int]):
    call_ids = [CALL_ID, "call_second_one"]  # deliveries of two calls interleave
    bodies = lifecycle_bodies(call_ids[0]) + lifecycle_bodies(call_ids[1])
    one_by_one = state_after_batches(bodies, order, list(range(1, len(order))), call_ids)
    batched = state_after_batches(bodies, order, cuts, call_ids)
    assert batched == one_by_one
