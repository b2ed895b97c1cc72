"""Where a request came from, behind a known number of reverse proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any


def client_ip(meta: Mapping[str, Any], *, trusted_proxies: int) -> str | None:
    """The caller's address.

    With ``trusted_proxies`` = N, the N-th address from the right of X-Forwarded-For is the
    one our own outermost proxy saw; anything left of it was written by the client and
    cannot be trusted. With 0 the header is ignored.
    """
    if trusted_proxies > 0:
        forwarded = [part.strip() for part in meta.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= trusted_proxies:
            return forwarded[-trusted_proxies]
    remote = meta.get("REMOTE_ADDR")
    return remote or None


def ip_allowed(address: str | None, allowlist: Iterable[str]) -> bool:
    """True when ``allowlist`` is empty (the check is off) or holds ``address``.

    Entries may be single addresses or networks in CIDR form.
    """
    entries = list(allowlist)
    if not entries:
        return True
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
