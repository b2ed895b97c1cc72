"""calls/llm/runtime.py: the process-wide collector settings the call socket applies."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from calls.llm import runtime


@pytest.fixture
def fresh_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    threshold = gc.get_threshold()
    monkeypatch.setattr(runtime, "_applied", False)
    yield
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("fresh_runtime")
def test_it_freezes_what_exists_and_raises_the_young_threshold_once(monkeypatch):
    collections: list[int] = []

    def collect(*_: int) -> int:
        collections.append(1)
        return 0

    monkeypatch.setattr(runtime.gc, "collect", collect)
    runtime.tune_once()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == runtime.GEN0_THRESHOLD
    runtime.tune_once()
    assert collections == [1], "applied once per process"
