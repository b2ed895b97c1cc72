"""The live transcript's writes: throttled, one at a time, coalesced to the latest, with the
call details on the first, and the session's closing write carrying the last of it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

from calls.llm import records
from calls.llm.live_transcript import LiveTranscript
from tests.llm_socket import transcript

CALL_ID = "call_live_transcript_0001"
DETAILS = {"call_id": CALL_ID, "agent_id": "agent_one"}
INTERVAL = 0.05  # seconds; long enough to tell a throttled write from an immediate one


@dataclass
class Write:
    call: Any
    said: list[str]
    started: float
    ended: float = 0.0


class Database:
    """``records.asave_transcript`` and ``asave_session`` without a database: what each write
    carried and when; while ``gate`` is set, a write waits for it to open."""

    def __init__(self) -> None:
        self.writes: list[Write] = []
        self.sessions: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None
        self.write_started = asyncio.Event()
        self.failures: list[Exception] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def save_transcript(self, *, call_id: str, transcript: Any, call: Any = None) -> None:
        assert call_id == CALL_ID
        loop = asyncio.get_running_loop()
        write = Write(call, [line["content"] for line in transcript], started=loop.time())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.write_started.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.failures:
                raise self.failures.pop(0)
            write.ended = loop.time()
            self.writes.append(write)
        finally:
            self.in_flight -= 1

    async def save_session(self, **kwargs: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sessions.append(kwargs)


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> Database:
    database = Database()
    monkeypatch.setattr(records, "asave_transcript", database.save_transcript)
    monkeypatch.setattr(records, "asave_session", database.save_session)
    return database


class Tasks:
    """The session's ``spawn``: the tasks started through it, by name."""

    def __init__(self) -> None:
        self.started: list[tuple[str, asyncio.Task[None]]] = []

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self.started.append((name, task))
        return task

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.started]

    async def finished(self) -> None:
        await asyncio.wait_for(asyncio.gather(*(task for _, task in self.started)), 10)


@pytest.fixture
async def tasks() -> AsyncIterator[Tasks]:
    tasks = Tasks()
    yield tasks
    for _, task in tasks.started:
        task.cancel()


def live(tasks: Tasks, interval: float = INTERVAL) -> LiveTranscript:
    return LiveTranscript(call_id=CALL_ID, interval=interval, spawn=tasks.spawn)


def said(write: Write) -> str:
    return write.said[-1]


async def test_updates_within_the_interval_make_one_write_of_the_latest(
    database: Database, tasks: Tasks
):
    transcripts = live(tasks)
    opened = asyncio.get_running_loop().time()
    for n in range(5):
        transcripts.remember(transcript(f"line {n}"))
    await asyncio.sleep(0)
    assert database.writes == [], "nothing is written before the interval has passed"
    await tasks.finished()
    (write,) = database.writes
    assert write.said == ["Hello! How can I help?", "line 4"]
    assert write.started - opened >= INTERVAL * 0.9
    assert tasks.names == ["live"], "one writer task, started through the session"


async def test_a_transcript_equal_to_the_last_is_not_written_again(
    database: Database, tasks: Tasks
):
    transcripts = live(tasks, interval=0)
    transcripts.remember(transcript("line 0"))
    await tasks.finished()
    transcripts.remember(transcript("line 0"))  # Retell repeats it with the next request
    await tasks.finished()
    assert [said(write) for write in database.writes] == ["line 0"]
    assert tasks.names == ["live"]


async def test_updates_during_a_write_make_one_more_write_of_the_latest(
    database: Database, tasks: Tasks
):
    database.gate = asyncio.Event()
    transcripts = live(tasks)
    transcripts.remember(transcript("line 0"))
    await asyncio.wait_for(database.write_started.wait(), 10)
    for n in range(1, 5):
        transcripts.remember(transcript(f"line {n}"))
    database.gate.set()
    await tasks.finished()
    first, second = database.writes
    assert [said(first), said(second)] == ["line 0", "line 4"]
    assert second.started - first.ended >= INTERVAL * 0.9, "at most one write per interval"
    assert database.most_in_flight == 1, "one write at a time"
    assert tasks.names == ["live"], "the running writer took the updates along"


async def test_call_details_ride_on_the_first_write_and_again_only_when_they_change(
    database: Database, tasks: Tasks
):
    transcripts = live(tasks, interval=0)
    transcripts.remember_details(DETAILS)
    transcripts.remember(transcript("line 0"))
    await tasks.finished()
    transcripts.remember(transcript("line 1"))
    await tasks.finished()
    changed = {**DETAILS, "agent_id": "agent_two"}
    transcripts.remember_details(changed)
    await tasks.finished()
    assert [(write.call, said(write)) for write in database.writes] == [
        (DETAILS, "line 0"),
        (None, "line 1"),
        (changed, "line 1"),
    ]
    assert transcripts.call == changed


async def test_a_failed_write_is_logged_and_the_next_change_is_still_written(
    database: Database, tasks: Tasks, caplog: pytest.LogCaptureFixture
):
    database.failures.append(RuntimeError("database is locked"))
    transcripts = live(tasks, interval=0)
    with caplog.at_level(logging.ERROR, logger="calls"):
        transcripts.remember(transcript("line 0"))
        await tasks.finished()
    (record,) = [r for r in caplog.records if r.name == "calls.llm.session"]
    assert record.getMessage() == "llm socket could not save the call"
    assert record.call_id == CALL_ID  # type: ignore[attr-defined]
    assert record.exc_info is not None
    transcripts.remember(transcript("line 1"))
    await tasks.finished()
    assert [said(write) for write in database.writes] == ["line 1"]


async def test_the_closing_write_carries_the_summary_and_what_a_throttled_write_still_owed(
    database: Database, tasks: Tasks
):
    transcripts = live(tasks, interval=60)
    transcripts.remember_details(DETAILS)
    transcripts.remember(transcript("line 0"))
    transcripts.remember(transcript("line 1"))
    for _, task in tasks.started:  # as the session cancels its tasks when the socket closes
        task.cancel()
    await asyncio.gather(*(task for _, task in tasks.started), return_exceptions=True)
    await transcripts.save_final(summary={"session_id": "s1"})
    assert database.writes == []
    assert database.sessions == [
        {
            "call_id": CALL_ID,
            "summary": {"session_id": "s1"},
            "call": DETAILS,
            "transcript": transcript("line 1"),
        }
    ]


async def test_a_failed_closing_write_is_logged_not_raised(
    database: Database, tasks: Tasks, caplog: pytest.LogCaptureFixture
):
    database.failures.append(RuntimeError("database is locked"))
    with caplog.at_level(logging.ERROR, logger="calls"):
        await live(tasks).save_final(summary={"session_id": "s1"})
    (record,) = [r for r in caplog.records if r.name == "calls.llm.session"]
    assert record.getMessage() == "llm socket could not save the session"
    assert record.call_id == CALL_ID  # type: ignore[attr-defined]
    assert database.sessions == []
