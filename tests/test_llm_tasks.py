"""A call session's tasks: named after the call, kept until they end, cancelled and awaited
together when the socket closes, and logged when one fails."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import pytest

from calls.llm.tasks import SessionTasks, cancel

CALL_ID = "call_tasks_0001"


async def until(event: asyncio.Event) -> None:
    await event.wait()


async def forever() -> None:
    await until(asyncio.Event())


async def test_tasks_are_named_after_the_call_and_forgotten_when_they_end():
    tasks = SessionTasks(call_id=CALL_ID)
    release = asyncio.Event()
    waiting = tasks.spawn(until(release), "answer-3")
    assert waiting.get_name() == f"llm-answer-3-{CALL_ID}"
    assert tasks.running == 1
    release.set()
    await waiting
    await asyncio.sleep(0)  # the done callback runs on the next loop turn
    assert tasks.running == 0
    ended = weakref.ref(waiting)
    del waiting
    gc.collect()
    assert ended() is None, "an ended task is not kept for the rest of the call"


async def test_cancel_all_returns_once_every_task_has_ended():
    tasks = SessionTasks(call_id=CALL_ID)
    cleaned_up: list[str] = []

    async def with_cleanup(name: str) -> None:
        try:
            await forever()
        finally:
            await asyncio.sleep(0)  # cleanup that itself takes a loop turn
            cleaned_up.append(name)

    spawned = [tasks.spawn(with_cleanup(name), name) for name in ("open", "live")]
    await asyncio.sleep(0)
    await tasks.cancel_all()
    assert sorted(cleaned_up) == ["live", "open"]
    assert all(task.cancelled() for task in spawned)
    assert tasks.running == 0


async def test_a_failed_task_is_logged_and_a_cancelled_one_is_not(
    caplog: pytest.LogCaptureFixture,
):
    tasks = SessionTasks(call_id=CALL_ID)

    async def broken() -> None:
        raise RuntimeError("responder bug")

    with caplog.at_level(logging.ERROR, logger="calls"):
        failed = tasks.spawn(broken(), "open")
        cancelled = tasks.spawn(forever(), "hangup")
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(failed, cancelled, return_exceptions=True)
        await asyncio.sleep(0)
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "calls.llm.session"
    assert record.getMessage() == f"llm socket task llm-open-{CALL_ID} failed"
    assert record.call_id == CALL_ID  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_cancel_stops_a_running_task_and_leaves_none_or_a_finished_one_alone():
    cancel(None)
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    cancel(done)
    assert not done.cancelled()
    running = asyncio.create_task(forever())
    await asyncio.sleep(0)
    cancel(running)
    with pytest.raises(asyncio.CancelledError):
        await running
