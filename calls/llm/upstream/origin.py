"""Where a request goes: an origin (scheme, host, port) and the path on it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from calls.llm.upstream.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """``https://host[:port]/path?query`` -> (origin, ``/path?query``)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UpstreamError(f"unsupported URL scheme or host: {parts.scheme!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), path
