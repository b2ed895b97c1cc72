"""The benchmarks' command lines refuse numbers outside their limits, with argparse's exit 2."""

from __future__ import annotations

import argparse

import pytest

from bench import socket_load, webhook_load
from bench._common import bounded


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
