"""Shared pieces for the retellhub benchmarks (standard library only).

- ``percentile`` / ``summarize_ms`` / ``latency_line``: latency statistics and their report line.
- ``Target``: a parsed ``http://host:port[/prefix]`` URL.
- ``HttpConnection``: a deliberately small asyncio HTTP/1.1 keep-alive client. One
  instance is one TCP connection; benchmarks give each concurrent worker its own.
  It is kept lean because on a 2-core box every cycle the client burns is stolen
  from the server under test.
- ``RetellSigner``: Retell's ``X-Retell-Signature`` scheme.
- ``bounded``: an argparse type for a number within limits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

from calls.net import is_loopback

N = TypeVar("N", int, float)

# ---------------------------------------------------------------- command lines


def bounded(kind: Callable[[str], N], low: N, high: N) -> Callable[[str], N]:
    """An argparse ``type``: ``kind(text)``, refused unless ``low <= value <= high``."""

    def parse(text: str) -> N:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


# ---------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already-sorted values."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile out of range: {pct}")
    rank = pct / 100.0 * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


def summarize_ms(
    durations_ns: Iterable[int], pcts: Sequence[float] = (50, 90, 99)
) -> dict[str, float | None]:
    """``{"p50": ms, ..., "max": ms}`` from nanosecond durations; ``None`` when empty."""
    ordered = sorted(durations_ns)
    keys = [f"p{pct:g}" for pct in pcts] + ["max"]
    if not ordered:
        return dict.fromkeys(keys)
    values = [percentile(ordered, pct) for pct in pcts] + [float(ordered[-1])]
    return {key: round(value / 1e6, 3) for key, value in zip(keys, values, strict=True)}


def latency_line(name: str, values_ns: Sequence[int], minus_ms: float = 0.0) -> str:
    """One report line: p50/p90/p99/max in ms of ``values_ns``, each less ``minus_ms``."""
    if not values_ns:
        return f"  {name:<34} (no samples)"
    shifted = [max(v - int(minus_ms * 1e6), 0) for v in values_ns]
    stats = summarize_ms(shifted)
    return (
        f"  {name:<34} p50 {stats['p50']:8.2f}  p90 {stats['p90']:8.2f}  "
        f"p99 {stats['p99']:8.2f}  max {stats['max']:8.2f}  ms  (n={len(values_ns)})"
    )


# ---------------------------------------------------------------- target URL


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    prefix: str  # URL path before the endpoint, "" for the root

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    def url(self, path: str) -> str:
        return f"http://{self.host_header}{self.prefix}{path}"


def parse_target(url: str, *, allow_remote: bool = False) -> Target:
    """Parse a plain-HTTP base URL; raises ``ValueError`` on anything else.

    A load generator aimed at the wrong host is a denial of service, so anything but
    loopback needs an explicit ``allow_remote``.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"only http:// URLs are supported, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {url!r}")
    if not allow_remote and not is_loopback(parts.hostname):
        raise ValueError(f"{parts.hostname} is not a loopback address; pass --allow-remote")
    return Target(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


# ---------------------------------------------------------------- HTTP client


class ServerClosedError(ConnectionError):
    """The server closed the connection before a complete response arrived."""


class BadResponseError(ConnectionError):
    """The response could not be parsed; a ConnectionError so callers count it with them."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes


class HttpConnection:
    """One persistent HTTP/1.1 connection, redialled on the next request after the server closes it.

    Requests on one instance must not overlap (no pipelining). Errors propagate as
    ``OSError`` (incl. ``ConnectionError``) or ``TimeoutError``; the socket is then
    dropped and the next ``request`` dials again.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 30.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.host_header = Target(host, port, "").host_header
        self.connects = 0  # dials that succeeded; more than one means the server closed on us
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """(Re)dial; also usable up front so the first timed request does not pay for it."""
        self.close()
        async with asyncio.timeout(self.timeout):
            # asyncio enables TCP_NODELAY on its own, so small requests are not Nagle-delayed.
            reader, writer = await asyncio.open_connection(self.host, self.port)
        self._reader, self._writer = reader, writer
        self.connects += 1
        return reader, writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes = b""
    ) -> HttpResponse:
        """Send one request and read the whole response. ``Host``/``Content-Length`` are added."""
        head = _request_head(method, target, self.host_header, headers, len(body))
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(head, body)
        except BaseException:
            self.close()
            raise

    async def _ensure_connected(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = self._reader, self._writer
        # An idle keep-alive socket the server has since closed shows up as EOF already
        # buffered; dial again rather than fail. No retry after sending, though: a request
        # the server may have half-processed must surface as an error, not vanish.
        if reader is None or writer is None or reader.at_eof() or writer.is_closing():
            return await self.connect()
        return reader, writer

    async def _exchange(self, head: bytes, body: bytes) -> HttpResponse:
        reader, writer = await self._ensure_connected()
        writer.writelines((head, body))  # one send, not two segments
        await writer.drain()
        version, status, headers = await _read_head(reader)
        while 100 <= status < 200:  # interim responses (e.g. 100 Continue) precede the real one
            version, status, headers = await _read_head(reader)
        if status in (204, 304) or head.startswith(b"HEAD "):
            response_body, keep_alive = b"", True  # never a body, whatever the headers say
        else:
            response_body, keep_alive = await _read_body(reader, headers)
        if not keep_alive or _wants_close(version, headers):
            self.close()
        return HttpResponse(status, headers, response_body)


def _request_head(
    method: str, target: str, host: str, headers: Mapping[str, str], length: int
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {length}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int, dict[str, str]]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise ServerClosedError("connection closed before the response head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadResponseError("response head larger than the stream limit") from exc
    return _parse_head(raw)


def _parse_head(raw: bytes) -> tuple[str, int, dict[str, str]]:
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    try:
        version, code = status_line.split(" ", 2)[:2]
        status = int(code)
    except ValueError as exc:
        raise BadResponseError(f"malformed status line: {status_line!r}") from exc
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return version, status, headers


def _wants_close(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return "keep-alive" not in connection
    return "close" in connection


async def _read_body(
    reader: asyncio.StreamReader, headers: Mapping[str, str]
) -> tuple[bytes, bool]:
    """Return ``(body, connection_reusable)``."""
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await _read_chunked(reader), True
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"])), True
    except asyncio.IncompleteReadError as exc:
        raise ServerClosedError("connection closed mid-body") from exc
    except (ValueError, asyncio.LimitOverrunError) as exc:
        raise BadResponseError("bad body framing") from exc
    # Neither framing header: the body runs until the server closes the socket.
    return await reader.read(), False


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            break
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass  # trailers, ignored
    return b"".join(chunks)


# ---------------------------------------------------------------- Retell signing


class RetellSigner:
    """``X-Retell-Signature: v=<ms>,d=<hex>`` with hex = HMAC-SHA256(api_key, body + str(ms))."""

    def __init__(self, api_key: str) -> None:
        # Keyed once and copied per request: saves re-deriving the HMAC pads every time.
        self._keyed = hmac.new(api_key.encode(), digestmod=hashlib.sha256)

    def sign(self, body: bytes, timestamp_ms: int | None = None) -> str:
        stamp = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        mac = self._keyed.copy()
        mac.update(body)
        mac.update(str(stamp).encode())
        return f"v={stamp},d={mac.hexdigest()}"
