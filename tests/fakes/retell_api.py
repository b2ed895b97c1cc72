"""A fake of Retell's ``POST /v3/list-calls`` on a loopback port, for ``sync_calls`` tests.

It speaks the same JSON as the real API as retell-sdk 6.2.13 sends and reads it: a bearer
API key, ``filter_criteria.start_timestamp`` (``ge``), ``limit``, ``sort_order`` and an
opaque ``pagination_key``; ``{"items", "has_more", "pagination_key", "total"?}`` back.
``fault`` makes it misbehave in one of the ways the command must survive.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LIST_CALLS = "/v3/list-calls"
# Ways to misbehave: HTTP 500, a body that is not JSON, a page without items, items that
# are not objects, "has_more" without a key, and the same key handed out forever.
FAULTS = ("error", "not_json", "no_items", "bad_items", "no_key", "same_key")


@dataclass
class FakeRetellAPI:
    api_key: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def page(self, request: dict[str, Any]) -> tuple[int, bytes]:
        self.requests.append(request)
        if self.fault == "error":
            return 500, b'{"message": "internal error"}'
        if self.fault == "not_json":
            return 200, b"<html>maintenance</html>"
        if self.fault == "no_items":
            return 200, b'{"has_more": false}'
        if self.fault == "bad_items":
            return 200, b'{"items": ["call_1"], "has_more": false}'
        return 200, json.dumps(self._page(request)).encode()

    def _page(self, request: dict[str, Any]) -> dict[str, Any]:
        since = request.get("filter_criteria", {}).get("start_timestamp", {}).get("value", 0)
        matching = sorted(
            (c for c in self.calls if c.get("start_timestamp", 0) >= since),
            key=lambda c: c.get("start_timestamp", 0),
        )
        offset = int(request.get("pagination_key", "p0")[1:])
        limit = int(request.get("limit", 1000))
        items = matching[offset : offset + limit]
        has_more = offset + limit < len(matching)
        page: dict[str, Any] = {"items": items, "has_more": has_more}
        if has_more and self.fault != "no_key":
            page["pagination_key"] = "p1" if self.fault == "same_key" else f"p{offset + limit}"
        if request.get("include_total"):
            page["total"] = len(matching)
        return page


def _handler(api: FakeRetellAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.headers.get("Authorization") != f"Bearer {api.api_key}":
                self._answer(401, b'{"message": "unauthorized"}')
            elif self.path != LIST_CALLS:
                self._answer(404, b'{"message": "not found"}')
            else:
                self._answer(*api.page(request))

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output quiet

    return Handler


@contextmanager
def fake_retell_api(*, api_key: str, calls: list[dict[str, Any]]) -> Iterator[FakeRetellAPI]:
    api = FakeRetellAPI(api_key=api_key, calls=calls)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
