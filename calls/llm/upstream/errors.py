"""What the upstream client raises; ``str()`` of any of them is safe to log."""

from __future__ import annotations


class UpstreamError(Exception):
    """The endpoint's answer is unusable; ``str()`` is safe to log (no transcript in it)."""


class UpstreamStatusError(UpstreamError):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class ConnectionDropped(UpstreamError):
    """Closed before any byte of the response arrived: a pooled connection that the server
    had closed while idle. Safe to retry once on a fresh connection."""
