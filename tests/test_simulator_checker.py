"""The conformance checker catches each rule, one deliberately broken backend per rule.

Every backend below is the conformant fake of tests/fake_backends.py with one fault; the
checker must report exactly that rule and nothing else. Only the timeout a fault runs into
is shortened; the others stay generous, as bounds for a stuck test, never asserted timings.
"""

from __future__ import annotations

from simulator.conformance import Rule
from simulator.run import CallResult, Options, simulate_call
from simulator.scenario import Scenario, Step
from simulator.socket_player import Timing
from tests import retell
from tests.fake_backends import Faults, fake_backend

SHORT = 0.3  # seconds, for the one wait a fault makes run out

TINY = Scenario(
    name="tiny",
    description="a turn, a turn talked over, a silence",
    call={
        "agent_id": "agent_test",
        "call_type": "phone_call",
        "direction": "inbound",
        "from_number": "+447700900123",
        "to_number": "+14155550148",
        "retell_llm_dynamic_variables": {"customer_name": "Zoë"},
    },
    analysis={"call_summary": "A test.", "user_sentiment": "Neutral"},
    steps=(
        Step(say="What are your opening hours?"),
        Step(say="Can I book for Tuesday?", interrupt="Sorry, I meant Wednesday."),
        Step(silence_ms=0),
    ),
)


async def check(faults: Faults, **timing: float) -> CallResult:
    async with fake_backend(faults) as backend:
        options = Options(
            url=backend.url,
            socket_url=backend.socket_url,
            api_key=retell.PRIMARY_KEY,
            check=True,
            timing=Timing(pace=0, **timing),
        )
        return await simulate_call(options, TINY)


def rules(result: CallResult) -> set[Rule]:
    return set(result.violations)


async def test_a_conformant_backend_has_no_violations():
    result = await check(Faults())
    assert rules(result) == set()
    assert result.ending == "user_hangup"
    assert result.interruptions == 1
    assert [d.status for d in result.deliveries] == [200, 200, 200]
    assert [d.status for d in result.probes] == [401, 401, 401, 400, 200]


async def test_it_catches_a_missing_begin_message():
    result = await check(Faults(no_begin=True), begin_timeout=SHORT)
    assert rules(result) == {Rule.NO_BEGIN_MESSAGE}


async def test_it_catches_a_stale_frame_after_a_newer_request():
    result = await check(Faults(stale=True))
    assert rules(result) == {Rule.STALE_FRAME}
    assert "response_id 2" in result.timeline.violations[0].detail


async def test_it_catches_an_answer_never_completed():
    result = await check(Faults(never_complete=True), answer_timeout=SHORT)
    assert rules(result) == {Rule.ANSWER_NOT_COMPLETED}
    # The talked-over answer need not complete; the other three must.
    assert len(result.timeline.violations) == 3


async def test_it_catches_an_unanswered_ping():
    result = await check(Faults(ignore_pings=True), ping_timeout=SHORT, ping_interval=SHORT)
    assert rules(result) == {Rule.PING_UNANSWERED}


async def test_it_catches_a_binary_frame_and_hangs_up_like_retell():
    result = await check(Faults(binary=True))
    assert rules(result) == {Rule.BINARY_FRAME}
    assert result.ending == "error_llm_websocket_corrupt_payload"


async def test_it_catches_a_non_json_frame():
    result = await check(Faults(non_json=True))
    assert rules(result) == {Rule.NON_JSON_FRAME}


async def test_it_catches_a_webhook_accepted_with_a_bad_signature():
    result = await check(Faults(accept_bad_signature=True))
    assert rules(result) == {Rule.BAD_SIGNATURE_ACCEPTED}
    assert len(result.timeline.violations) == 2, "another key, and no header at all"


async def test_it_catches_a_webhook_accepted_with_a_stale_signature():
    result = await check(Faults(accept_stale_signature=True))
    assert rules(result) == {Rule.STALE_SIGNATURE_ACCEPTED}


async def test_it_catches_a_2xx_for_a_malformed_body():
    result = await check(Faults(accept_malformed=True))
    assert rules(result) == {Rule.MALFORMED_BODY_ACCEPTED}


async def test_it_catches_the_legacy_data_body_refused():
    result = await check(Faults(refuse_legacy=True))
    assert rules(result) == {Rule.LEGACY_BODY_REFUSED}


async def test_without_check_it_sends_no_probes():
    async with fake_backend(Faults(accept_bad_signature=True)) as backend:
        options = Options(
            url=backend.url, socket_url=backend.socket_url, api_key=retell.PRIMARY_KEY,
            timing=Timing(pace=0),
        )  # fmt: skip
        result = await simulate_call(options, TINY)
    assert result.probes == []
    assert rules(result) == set()
