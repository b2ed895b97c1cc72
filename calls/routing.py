"""WebSocket routes, mounted by retellhub/asgi.py."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
