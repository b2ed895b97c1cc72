"""simulate_call against our own server: a real server on a loopback port, every scenario."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from calls.models import Call, CallEvent
from simulator.scenario import bundled_scenarios
from tests import retell
from tests.conftest import StartServer
from tests.llm_socket import profile_file
from tests.servers import (
    RunningServer,
    free_port,
    ping_and_hang_up,
    wait_until_sockets_closed,
)

pytestmark = pytest.mark.django_db(transaction=True)

TRANSFER_TO = "+14155550100"


@pytest.fixture(autouse=True)
def _server_done_before_the_flush(request: pytest.FixtureRequest) -> Any:
    yield
    # The shared server is still writing the last socket session when the simulator
    # returns; the test's database flush must not race it.
    if "asgi_server" in request.fixturenames:
        wait_until_sockets_closed(request.getfixturevalue("asgi_server"))


def simulate(server: RunningServer, tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out, report = StringIO(), tmp_path / "report.json"
    call_command(
        "simulate_call",
        "--url", server.url, "--api-key", retell.PRIMARY_KEY, "--pace", "0",
        "--json", str(report), *args,
        stdout=out,
    )  # fmt: skip
    return out.getvalue(), json.loads(report.read_text())


@pytest.mark.parametrize("scenario", bundled_scenarios())
def test_every_bundled_scenario_passes_the_check_against_our_server(
    asgi_server: RunningServer, tmp_path: Path, scenario: str
):
    output, report = simulate(asgi_server, tmp_path, "--scenario", scenario, "--check")
    assert "conformance: no violations" in output
    (result,) = report["results"]
    assert result["violations"] == []
    assert [probe["status"] for probe in result["probes"]] == [401, 401, 401, 400, 200]
    call = Call.objects.get(call_id=result["call_id"])
    assert call.status == "ended"
    assert call.disconnection_reason == result["ending"]
    assert call.call_summary
    transcript = call.transcript_document("transcript_object") or []
    assert [turn["content"] for turn in transcript] == _said(result)


def _said(result: dict[str, Any]) -> list[str]:
    """Caller and agent lines in timeline order: what the transcript must hold."""
    lines = []
    for moment in result["timeline"]:
        if moment["actor"] == "caller" and not moment["text"].startswith("(silent"):
            lines.append(moment["text"])
        elif moment["actor"] == "agent" and moment["text"] != "(nothing)":
            lines.append(moment["text"])
    return lines


def test_the_default_scenario_plays_reminder_interruption_and_keepalive(
    asgi_server: RunningServer, tmp_path: Path
):
    _, report = simulate(asgi_server, tmp_path, "--check")
    (result,) = report["results"]
    kinds = [answer["kind"] for answer in result["answers"]]
    assert kinds == ["begin", "response", "response", "response", "reminder", "response"]
    assert result["ping_round_trips_ms"], "the server asked for auto_reconnect: pings flowed"
    assert CallEvent.objects.filter(call__call_id=result["call_id"], payload_key="data").exists()


def test_the_end_call_scenario_is_ended_by_the_agent(asgi_server: RunningServer, tmp_path: Path):
    output, report = simulate(asgi_server, tmp_path, "--scenario", "end_call")
    assert report["results"][0]["ending"] == "agent_hangup"
    assert "note:" not in output


def test_the_transfer_scenario_transfers_with_a_profile_that_transfers(
    asgi_server_factory: StartServer, tmp_path: Path
):
    rule = {"keywords": ["person", "someone"], "reply": "Of course, one moment.",
            "transfer_number": TRANSFER_TO}  # fmt: skip
    server = asgi_server_factory({"AGENT_PROFILE_FILE": profile_file(tmp_path, rules=[rule])})
    _, report = simulate(server, tmp_path, "--scenario", "transfer", "--check")
    (result,) = report["results"]
    assert (result["ending"], result["transfer_destination"]) == ("call_transfer", TRANSFER_TO)
    assert result["notes"] == []
    assert result["violations"] == []
    call = Call.objects.get(call_id=result["call_id"])
    assert call.disconnection_reason == "call_transfer"
    wait_until_sockets_closed(server)


def test_turns_from_flags(asgi_server: RunningServer, tmp_path: Path):
    _, report = simulate(
        asgi_server, tmp_path,
        "--say", "Where are you located?", "--interrupt", "And how much is a visit?",
        "--silence", "0", "--say", "Thanks, bye!",
    )  # fmt: skip
    texts = [answer["text"] for answer in report["results"][0]["answers"]]
    assert "A standard visit is forty dollars." in texts
    assert report["results"][0]["ending"] == "agent_hangup"


def test_many_calls_print_the_benchmark_figures(asgi_server: RunningServer, tmp_path: Path):
    output, report = simulate(asgi_server, tmp_path, "--calls", "4", "--concurrency", "2")
    assert "request -> first content frame" in output
    assert "conformance: no violations" in output
    assert report["calls"] == 4
    numbers = {result["call_id"] for result in report["results"]}
    assert len(numbers) == 4
    callers = set(Call.objects.filter(call_id__in=numbers).values_list("from_number", flat=True))
    assert len(callers) == 4, "each call has its own caller"


def test_an_unreachable_server_exits_2(tmp_path: Path):
    with pytest.raises(CommandError, match="cannot connect") as failed:
        call_command("simulate_call", "--url", f"http://127.0.0.1:{free_port()}", stdout=StringIO())
    assert failed.value.returncode == 2


def test_an_unknown_scenario_exits_2(asgi_server: RunningServer):
    with pytest.raises(CommandError, match="no scenario 'nope'") as failed:
        call_command("simulate_call", "--url", asgi_server.url, "--scenario", "nope")
    assert failed.value.returncode == 2


def test_a_wrong_key_fails_the_check_with_exit_1(asgi_server: RunningServer, tmp_path: Path):
    out = StringIO()
    with pytest.raises(CommandError, match="protocol violation") as failed:
        call_command(
            "simulate_call", "--url", asgi_server.url, "--api-key", "key_not_configured",
            "--pace", "0", "--check", stdout=out,
        )  # fmt: skip
    assert failed.value.returncode == 1
    assert "webhook_refused" in out.getvalue()


def test_a_client_hanging_up_right_behind_a_ping_ends_its_session(asgi_server: RunningServer):
    # Under uvicorn the connection is gone before the application answers the ping, so
    # that send raises; the session must still end, be recorded and leave the gauge.
    call_id = f"call_ping_then_hang_up_{asgi_server.port}"
    ping_and_hang_up(asgi_server, call_id)
    wait_until_sockets_closed(asgi_server, timeout=5)
    event = CallEvent.objects.get(call__call_id=call_id, event="llm_session")
    assert (event.payload["close_code"], event.payload["closed_by"]) == (1000, "client")
