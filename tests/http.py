"""A tiny blocking HTTP client for tests that talk to a real server over loopback."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> Reply:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, parts.path or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.read())
    finally:
        connection.close()


def post_webhook(base_url: str, body: bytes, signature: str) -> Reply:
    return request(
        f"{base_url}/webhook",
        "POST",
        body,
        {"Content-Type": "application/json", "X-Retell-Signature": signature},
    )
