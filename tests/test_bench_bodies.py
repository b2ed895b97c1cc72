"""The webhook benchmark's bodies: realistic sizes, and both payload shapes parse alike."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from bench import webhook_bodies
from bench.webhook_bodies import CALL_ID_SLOT, MAX_TEMPLATE_BYTES, MIN_BODY_BYTES, render_call
from calls.payloads import parse_webhook


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    # Start times are drawn back from now: one clock makes two renders comparable.
    monkeypatch.setattr(webhook_bodies, "time", SimpleNamespace(time_ns=lambda: 1767225600 * 10**9))


def _rendered(payload_key: str) -> list[bytes]:
    bodies = render_call(random.Random(7), "run", payload_key=payload_key)
    return [body.replace(CALL_ID_SLOT.encode(), b"call_1") for body in bodies]


def test_ended_and_analyzed_bodies_carry_a_transcript_in_the_size_range():
    started, ended, analyzed = render_call(random.Random(7), "run")
    assert len(started) < MIN_BODY_BYTES
    for body in (ended, analyzed):
        assert MIN_BODY_BYTES <= len(body) <= MAX_TEMPLATE_BYTES


@pytest.mark.parametrize("payload_key", ["call", "data"])
def test_each_shape_parses_to_the_same_call_objects(payload_key):
    current = [parse_webhook(body) for body in _rendered("call")]
    shaped = [parse_webhook(body) for body in _rendered(payload_key)]
    assert [event.payload_key for event in shaped] == [payload_key] * 3
    assert [event.event for event in shaped] == ["call_started", "call_ended", "call_analyzed"]
    assert [event.call for event in shaped] == [event.call for event in current]


def test_the_legacy_shape_keeps_each_body_the_same_length():
    assert [len(body) for body in _rendered("data")] == [len(body) for body in _rendered("call")]
