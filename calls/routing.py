"""WebSocket routes, mounted by retellhub/asgi.py, which decides how each list is protected."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from calls.consumers import LiveCallsConsumer, LLMSocketConsumer

# Retell appends the call id to the configured URL as the last path segment and
# normalises a trailing slash (retell-protocol.md B.1); a query string may follow.
#
# No AllowedHostsOriginValidator here: it refuses any handshake without an Origin header,
# and Retell, a server-side client, sends none. Origin checks protect browsers' cookies;
# this socket has no cookie authentication (see calls/llm/access.py for what it has).
websocket_urlpatterns: list[Any] = [
    re_path(r"^llm-websocket/(?P<call_id>[A-Za-z0-9_.\-]{1,128})/?$", LLMSocketConsumer.as_asgi()),
]

# The live monitor, for browsers: mounted under ``ws/`` behind the session and an origin
# check (its cookie would otherwise let any web page a staff member visits read calls).
live_urlpatterns: list[Any] = [
    re_path(r"^calls/$", LiveCallsConsumer.as_asgi()),
    re_path(r"^calls/(?P<call_id>[^/]{1,128})/$", LiveCallsConsumer.as_asgi()),
]
