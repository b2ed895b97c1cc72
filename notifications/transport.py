"""The only code here that talks to the network: one POST, one download, each timed.

Neither raises for a failed receiver: the outcome says what happened, so the caller can
log the attempt and schedule the next. Error texts go through the log redactor, because
they end up in admin and in logs and a URL can carry a credential (Slack's does).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from retellhub.logging import redact_text

USER_AGENT = "retellhub-outbox/1"
DOWNLOAD_CHUNK_BYTES = 64 * 1024


class TooLarge(Exception):
    """The body exceeded the configured maximum; the partial file is discarded."""


@dataclass(frozen=True, slots=True)
class HttpOutcome:
    status_code: int | None
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Download:
    outcome: HttpOutcome
    path: Path | None = None
    size_bytes: int = 0
    sha256: str = ""
    content_type: str = ""


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _error_text(exc: Exception) -> str:
    return redact_text(f"{type(exc).__name__}: {exc}")[:500]


def http_post(*, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> HttpOutcome:
    started = time.monotonic()
    try:
        response = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            timeout=timeout,
            # A receiver that redirects is misconfigured; following would re-post the body
            # (and its signature) somewhere nobody configured.
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return HttpOutcome(
            status_code=None, latency_ms=_elapsed_ms(started), error=_error_text(exc)
        )
    outcome = HttpOutcome(status_code=response.status_code, latency_ms=_elapsed_ms(started))
    if outcome.ok:
        return outcome
    return HttpOutcome(
        status_code=response.status_code,
        latency_ms=outcome.latency_ms,
        error=f"HTTP {response.status_code}",
    )


def http_download(*, url: str, timeout: float, max_bytes: int, directory: Path) -> Download:
    """Stream ``url`` into a temporary file in ``directory``, hashing as it arrives."""
    started = time.monotonic()
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as handle:
        path = Path(handle.name)
        try:
            with httpx.stream(
                "GET",
                url,
                timeout=timeout,
                follow_redirects=True,
                headers={"User-Agent": USER_AGENT},
            ) as response:
                if response.status_code != 200:
                    path.unlink(missing_ok=True)
                    return Download(
                        outcome=HttpOutcome(
                            status_code=response.status_code,
                            latency_ms=_elapsed_ms(started),
                            error=f"HTTP {response.status_code}",
                        )
                    )
                for chunk in response.iter_bytes(DOWNLOAD_CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"larger than {max_bytes} bytes")
                    digest.update(chunk)
                    handle.write(chunk)
                content_type = response.headers.get("content-type", "")
        except (httpx.HTTPError, TooLarge) as exc:
            path.unlink(missing_ok=True)
            return Download(
                outcome=HttpOutcome(
                    status_code=None, latency_ms=_elapsed_ms(started), error=_error_text(exc)
                )
            )
    return Download(
        outcome=HttpOutcome(status_code=200, latency_ms=_elapsed_ms(started)),
        path=path,
        size_bytes=size,
        sha256=digest.hexdigest(),
        content_type=content_type.split(";")[0].strip(),
    )
