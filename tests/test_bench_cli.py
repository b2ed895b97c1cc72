"""The benchmarks' command lines refuse numbers outside their limits, with argparse's exit 2."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from bench import socket_load, webhook_load, writer_cpu
from bench._common import bounded
from calls.models import CallEvent
from tests import retell
from tests.servers import ROOT, RunningServer


def test_bounded_keeps_the_type_and_its_limits() -> None:
    ms = bounded(float, 0.0, 10.0)
    assert ms("2.5") == 2.5
    assert ms("10") == 10.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"between 0\.0 and 10\.0"):
        ms("10.5")
    with pytest.raises(ValueError, match="invalid literal"):
        bounded(int, 1, 3)("2.5")


@pytest.mark.parametrize(
    "argv",
    [["--calls", "0"], ["--turns", "-1"], ["--ping-ms", "1"], ["--pause-ms", "x"]],
)
def test_socket_load_refuses_numbers_it_cannot_run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        socket_load.parse_args(argv)
    assert exit_info.value.code == 2


def test_socket_load_defaults_describe_a_brisk_phone_call() -> None:
    args = socket_load.parse_args([])
    assert (args.calls, args.turns, args.pause_ms, args.interrupt_every) == (20, 30, 2000.0, 4)


@pytest.mark.parametrize(
    "argv", [["--concurrency", "0"], ["--requests", "0"], ["--timeout", "0.01"]]
)
def test_webhook_load_refuses_numbers_it_cannot_run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        webhook_load._parse_args(["--api-key", "k", *argv])
    assert exit_info.value.code == 2


def test_webhook_load_reads_its_limits_as_numbers() -> None:
    args = webhook_load._parse_args(["--api-key", "k", "--concurrency", "64", "--timeout", "2"])
    assert (args.concurrency, args.timeout, args.requests) == (64, 2.0, 3000)


@pytest.mark.parametrize(
    "argv", [["--batch", "0"], ["--batch", "65"], ["--deliveries", "0"], ["--interleave", "0"]]
)
def test_writer_cpu_refuses_numbers_it_cannot_run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        writer_cpu.parse_args(argv)
    assert exit_info.value.code == 2


@pytest.mark.parametrize("calls", [1, 16])
def test_writer_cpu_interleaves_calls_each_in_lifecycle_order(calls: int) -> None:
    bodies = writer_cpu._bodies(60, seed=3, run_id="interleave", calls=calls)
    events: dict[str, list[str]] = {}
    for body in bodies:
        document = json.loads(body)
        events.setdefault(document["call"]["call_id"], []).append(document["event"])
    assert len(bodies) == 60
    lifecycle = ["call_started", "call_ended", "call_analyzed"]
    assert all(sent == lifecycle[: len(sent)] for sent in events.values())
    first_six = {json.loads(body)["call"]["call_id"] for body in bodies[:6]}
    if calls == 1:  # one call's three deliveries in a row, then the next call's
        assert (len(first_six), len(events)) == (2, 20)
    else:  # mostly different calls side by side; some still in progress at the end
        assert len(first_six) >= 4
        assert len(events) > 20


def bench_report(argv: list[str], *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a benchmark script with this interpreter; its ``--json`` report."""
    finished = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report: dict[str, Any] = json.loads(finished.stdout)
    return report


def test_writer_cpu_stores_every_delivery_in_a_fresh_database_and_reports_its_cost() -> None:
    # Without DATABASE_URL it must not touch the configured database: a fresh SQLite file.
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    report = bench_report(
        ["bench/writer_cpu.py", "--deliveries", "12", "--batch", "4", "--json"], env=env
    )
    assert (report["database"], report["batch"], report["deliveries"]) == ("sqlite", 4, 12)
    assert report["interleave"] == 16
    assert report["stored_events"] == 13  # the timed ones and the first, untimed
    assert report["writer_cpu_ms_per_delivery"] > 0
    assert report["wall_ms_per_delivery"] > 0
    assert "database_cpu_ms_per_delivery" not in report  # SQLite runs in this process


@pytest.mark.django_db(transaction=True)
def test_webhook_load_stores_every_delivery_and_reports_its_own_cost(
    asgi_server: RunningServer,
) -> None:
    report = bench_report(
        [
            "bench/webhook_load.py",
            *("--url", asgi_server.url, "--api-key", retell.TEST_KEYS[0]),
            *("--concurrency", "4", "--requests", "30", "--warmup", "3"),
            *("--run-id", "clientcheck", "--json"),
        ]
    )
    assert report["status_counts"] == {"200": 30}
    assert report["responses"] == 30
    assert report["client_cpu_ms_per_response"] > 0
    stored = CallEvent.objects.filter(call__call_id__startswith="call_bench_clientcheck_")
    assert stored.count() == 33  # the warm-up's too
