"""calls/llm/runtime.py: the collector setting the call socket applies once per process."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from calls.llm import runtime


@pytest.fixture
def fresh_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    threshold = gc.get_threshold()
    monkeypatch.setattr(runtime, "_applied", False)
    gc.set_threshold(700, threshold[1], threshold[2])
    yield
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("fresh_runtime")
def test_it_raises_the_young_threshold_once_and_keeps_the_others():
    _, gen1, gen2 = gc.get_threshold()
    runtime.tune_once()
    assert gc.get_threshold() == (runtime.GEN0_THRESHOLD, gen1, gen2)
    gc.set_threshold(700, gen1, gen2)
    runtime.tune_once()
    assert gc.get_threshold()[0] == 700, "applied once per process"
