"""Requests to the whole ASGI application, in process, shaped like Django's test client.

The webhook has two transports: Django's DRF view (WSGI, the test client) and, under
ASGI, its lean endpoint (calls/webhook_asgi.py). Contract tests run against both through
this client, which takes the same arguments as ``django.test.Client.post`` (WSGI-style
``extra`` keys included) and answers with ``status_code``, ``headers`` and ``content``.

It runs the application with ``async_to_sync`` from the test's thread, so thread-sensitive
database work comes back to that thread and sees the test's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator

DEFAULT_CLIENT = ("127.0.0.1", 50000)


@dataclass
class AsgiResponse:
    status_code: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.content)


def http_scope(
    method: str, path: str, headers: list[tuple[bytes, bytes]], client: tuple[str, int]
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": ("127.0.0.1", 8000),
    }


def _headers_from_extra(
    extra: dict[str, Any], *, content_type: str | None, headers: dict[str, str] | None
) -> tuple[list[tuple[bytes, bytes]], tuple[str, int]]:
    """ASGI headers and the client address from Django test-client style arguments."""
    pairs: dict[str, str] = {"host": "127.0.0.1"}
    if content_type:
        pairs["content-type"] = content_type
    client = DEFAULT_CLIENT
    for key, value in extra.items():
        if key == "REMOTE_ADDR":
            client = (str(value), DEFAULT_CLIENT[1])
        elif key == "CONTENT_LENGTH":
            pairs["content-length"] = str(value)
        elif key.startswith("HTTP_"):
            pairs[key[5:].lower().replace("_", "-")] = str(value)
        else:
            raise ValueError(f"no ASGI equivalent for {key}")
    for name, value in (headers or {}).items():
        pairs[name.lower()] = value
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs.items()], client


async def _call(app: Any, scope: dict[str, Any], body: bytes) -> AsgiResponse:
    communicator = ApplicationCommunicator(app, scope)
    await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
    start = await communicator.receive_output(timeout=10)
    content = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        content += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await communicator.wait(timeout=10)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return AsgiResponse(start["status"], content, headers)


class AsgiClient:
    """``post`` and ``get`` against ``retellhub.asgi.application``."""

    def __init__(self) -> None:
        from retellhub.asgi import application

        self.app = application

    def request(
        self,
        method: str,
        path: str,
        data: bytes = b"",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> AsgiResponse:
        pairs, client = _headers_from_extra(extra, content_type=content_type, headers=headers)
        declared = dict(pairs).get(b"content-length")
        if declared is None:
            pairs.append((b"content-length", str(len(data)).encode()))
        else:
            # An HTTP server reads no more than Content-Length says.
            data = data[: int(declared)]
        return async_to_sync(_call)(self.app, http_scope(method, path, pairs, client), data)

    def post(self, path: str, data: bytes = b"", **kwargs: Any) -> AsgiResponse:
        return self.request("POST", path, data, **kwargs)

    def get(self, path: str, **kwargs: Any) -> AsgiResponse:
        return self.request("GET", path, **kwargs)
