"""The text/event-stream format (HTML's server-sent events), decoded from pieces of any size."""

from __future__ import annotations

from collections import deque


class EventStream:
    """The data of each event in a response body, in order, as its bytes arrive."""

    def __init__(self) -> None:
        self._pending = bytearray()  # the start of a line not yet ended
        self._data_lines: list[bytes] = []
        self._event_name = b""
        self.events: deque[bytes] = deque()
        self.errored = False  # an ``event: error`` was read

    def reset(self) -> None:
        # In place: the connection hands out ``events`` itself.
        self._pending.clear()
        self._data_lines = []
        self._event_name = b""
        self.events.clear()
        self.errored = False

    def feed(self, data: bytes) -> None:
        self._pending += data
        start = 0
        while (end := self._pending.find(b"\n", start)) >= 0:
            self._line(bytes(self._pending[start:end]).rstrip(b"\r"))
            start = end + 1
        del self._pending[:start]

    def _line(self, line: bytes) -> None:
        if not line:
            if self._data_lines:
                if self._event_name == b"error":
                    self.errored = True
                self.events.append(b"\n".join(self._data_lines))
            self._data_lines = []
            self._event_name = b""
            return
        if line.startswith(b":"):
            return  # a comment, e.g. a keep-alive
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data_lines.append(value)
        elif name == b"event":
            self._event_name = value
