"""WebSocket routes, mounted by retellhub/asgi.py."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from calls.consumers import LLMSocketConsumer

# Retell appends the call id to the configured URL as the last path segment and
# normalises a trailing slash (retell-protocol.md B.1); a query string may follow.
#
# No AllowedHostsOriginValidator here: it refuses any handshake without an Origin header,
# and Retell, a server-side client, sends none. Origin checks protect browsers' cookies;
# this socket has no cookie authentication (see calls/llm/access.py for what it has).
websocket_urlpatterns: list[Any] = [
    re_path(r"^llm-websocket/(?P<call_id>[A-Za-z0-9_.\-]{1,128})/?$", LLMSocketConsumer.as_asgi()),
]
