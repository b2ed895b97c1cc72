"""Retell's side of a call socket, and lookups the call socket tests share."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.testing import WebsocketCommunicator

from bench.fake_model import FakeModel, StreamRecord
from calls.models import Call, CallEvent
from retellhub.asgi import application
from tests.llm_socket import CALL_ID, is_complete

WAIT = 10  # seconds a frame may take under a loaded CI box; never asserted as a timing


class Retell:
    """Retell's side of one socket."""

    def __init__(self, call_id: str = CALL_ID, query: str = "", headers: Any = None) -> None:
        self.communicator = WebsocketCommunicator(
            application, f"/llm-websocket/{call_id}{query}", headers=headers or []
        )
        self.frames: list[dict[str, Any]] = []

    async def connect(self) -> tuple[bool, Any]:
        return await self.communicator.connect(timeout=WAIT)

    async def send(self, document: dict[str, Any]) -> None:
        await self.communicator.send_json_to(document)

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def recv(self) -> dict[str, Any]:
        output = await self.communicator.receive_output(WAIT)
        assert output["type"] == "websocket.send", output
        assert "bytes" not in output, "only text frames may be sent"
        frame = json.loads(output["text"])
        self.frames.append(frame)
        return frame

    async def until(self, predicate: Any) -> list[dict[str, Any]]:
        """Frames up to and including the first that satisfies ``predicate``."""
        seen = []
        while True:
            frame = await self.recv()
            seen.append(frame)
            if predicate(frame):
                return seen

    async def answer(self, response_id: int) -> list[dict[str, Any]]:
        return await self.until(lambda frame: is_complete(frame, response_id))

    async def opening(self) -> tuple[dict[str, Any], dict[str, Any]]:
        config = await self.recv()
        begin = await self.recv()
        return config, begin

    async def nothing(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout)

    async def close_code(self) -> int:
        output = await self.communicator.receive_output(WAIT)
        assert output["type"] == "websocket.close", output
        return int(output.get("code", 1000))

    async def disconnect(self, code: int = 1000) -> None:
        await self.communicator.disconnect(code=code, timeout=WAIT)


async def stream_for(model: FakeModel, match: str) -> StreamRecord:
    # The fake model's lookup blocks while it waits; keep the event loop free meanwhile.
    return await asyncio.to_thread(model.stream_for, match)


async def ended(record: StreamRecord) -> str:
    return await asyncio.to_thread(record.wait_ended)


def last_said(call: Call) -> str:
    transcript = call.transcript_object or []
    return str(transcript[-1]["content"]) if transcript else ""


def session_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("llm-")]


async def call_row(call_id: str = CALL_ID) -> Call | None:
    return await Call.objects.filter(call_id=call_id).afirst()


async def session_events(call_id: str = CALL_ID) -> list[CallEvent]:
    return [event async for event in CallEvent.objects.filter(call__call_id=call_id)]
