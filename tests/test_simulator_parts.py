"""The simulator's pieces on their own: scenarios, frame checks, the answer ledger, pings."""

from __future__ import annotations

import json

import pytest

from simulator.conformance import AnswerLedger, FrameProblem, Ping, PingTracker, Rule, read_frame
from simulator.run import Options, socket_url_for
from simulator.scenario import (
    Interrupt,
    ScenarioError,
    Step,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    steps_from_flags,
)


def test_the_four_bundled_scenarios_load_with_distinct_callers():
    names = bundled_scenarios()
    assert names == ["default", "end_call", "silent_caller", "transfer"]
    calls = [load_scenario(name).call for name in names]
    assert len({call["from_number"] for call in calls}) == 4
    customers = [call["retell_llm_dynamic_variables"]["customer_name"] for call in calls]
    assert all(not name.isascii() for name in customers), "unicode names throughout"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"call": {}, "steps": []}, "'steps' must be a non-empty list"),
        ({"call": {}, "steps": [{"say": "hi", "silence_ms": 5}]}, "'silence_ms' is a whole"),
        ({"call": {}, "steps": [{"say": "  "}]}, "needs 'say'"),
        ({"call": {}, "steps": [{"say": "hi"}], "hangup": "agent_hangup"}, "'hangup' must"),
        ({"steps": [{"say": "hi"}]}, "'call' must be an object"),
    ],
)
def test_it_refuses_a_broken_scenario(document, problem):
    with pytest.raises(ScenarioError, match=problem):
        parse_scenario(document, name="broken")


def test_a_scenario_file_that_is_not_json_names_the_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text("{nope")
    with pytest.raises(ScenarioError, match="mine.json: not valid JSON"):
        load_scenario(str(path))


def test_an_interrupt_flag_belongs_to_the_say_before_it():
    steps = steps_from_flags([Step(say="hi"), Interrupt("wait"), Step(silence_ms=10)])
    assert steps == [Step(say="hi", interrupt="wait"), Step(silence_ms=10)]
    with pytest.raises(ScenarioError):
        steps_from_flags([Step(silence_ms=10), Interrupt("wait")])


def test_the_call_id_goes_before_the_query_string():
    base = "ws://127.0.0.1:8000/llm-websocket/?token=s3cret"
    assert socket_url_for(base, "call_1") == "ws://127.0.0.1:8000/llm-websocket/call_1?token=s3cret"
    default = Options(url="http://127.0.0.1:8000/", api_key="k").socket_base()
    assert default == "ws://127.0.0.1:8000/llm-websocket"


def test_a_frame_without_response_type_is_a_response():
    frame = read_frame(json.dumps({"response_id": 1, "content": "", "content_complete": True}))
    assert frame.kind == "response"


@pytest.mark.parametrize(
    ("message", "rule"),
    [
        (b"\x00", Rule.BINARY_FRAME),
        ("{oops", Rule.NON_JSON_FRAME),
        ("[1, 2]", Rule.INVALID_FRAME),
        ('{"response_type": "telepathy"}', Rule.INVALID_FRAME),
        ('{"response_id": true, "content": "", "content_complete": true}', Rule.INVALID_FRAME),
        ('{"response_id": 1, "content": "", "content_complete": "yes"}', Rule.INVALID_FRAME),
        ('{"response_id": 1, "content": "", "content_complete": true, "end_call": 1}',
         Rule.INVALID_FRAME),
    ],
)  # fmt: skip
def test_it_names_the_rule_a_bad_frame_breaks(message, rule):
    with pytest.raises(FrameProblem) as problem:
        read_frame(message)
    assert problem.value.rule == rule


def response(response_id: int, content: str = "x", complete: bool = False) -> dict:
    return {"response_id": response_id, "content": content, "content_complete": complete}


def test_an_old_frame_crossing_the_newer_request_is_not_blamed():
    ledger = AnswerLedger()
    ledger.expect(0, "begin", 0)
    ledger.expect(1, "response", 0)
    ledger.expect(2, "response", 0)
    assert ledger.on_response(response(1), 1) is None
    assert ledger.in_flight == 1


def test_an_old_frame_after_the_server_showed_it_had_the_newer_request_is_stale():
    ledger = AnswerLedger()
    ledger.expect(1, "response", 0)
    ledger.expect(2, "response", 0)
    assert ledger.on_response(response(2), 1) is None  # the proof
    problem = ledger.on_response(response(1), 2)
    assert problem is not None
    assert problem.rule == Rule.STALE_FRAME


def test_frames_after_content_complete_and_for_unknown_ids_are_flagged():
    ledger = AnswerLedger()
    ledger.expect(1, "response", 0)
    assert ledger.on_response(response(1, "done", complete=True), 1) is None
    after = ledger.on_response(response(1), 2)
    unknown = ledger.on_response(response(7), 3)
    assert (after and after.rule, unknown and unknown.rule) == (
        Rule.FRAME_AFTER_COMPLETE,
        Rule.INVALID_FRAME,
    )


def test_a_pong_matches_its_ping_or_else_the_oldest():
    tracker = PingTracker()
    first, second = tracker.next_timestamp(1000), tracker.next_timestamp(1000)
    assert second == first + 1, "timestamps never repeat"
    tracker.sent(Ping(first, 0, 0))
    tracker.sent(Ping(second, 0, 3))
    assert tracker.answered(second, 10) == Ping(second, 0, 3)
    assert tracker.answered(999_999, 20) == Ping(first, 0, 0)
    assert tracker.idle.is_set()
    assert tracker.round_trips_ns == [10, 20]


def test_a_ping_past_its_limit_is_overdue_once():
    tracker = PingTracker()
    tracker.sent(Ping(1, 0, 0))
    assert tracker.overdue(int(0.1e9), 0.5) == []
    assert tracker.overdue(int(1e9), 0.5) == [Ping(1, 0, 0)]
    assert tracker.overdue(int(2e9), 0.5) == []
