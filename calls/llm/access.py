"""Optional protection of the socket, checked before it is accepted.

Retell sends no credentials on this socket (retell-protocol.md B.1); what it allows is a
secret in the configured URL's query string and its fixed source address. Both checks are
off unless configured.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs

from calls.net import client_ip, ip_allowed

TOKEN_PARAMETER = "token"  # noqa: S105 - the name of the query parameter, not a secret


def _token_ok(query_string: bytes, expected: str) -> bool:
    values = parse_qs(query_string.decode("latin-1")).get(TOKEN_PARAMETER, [])
    given = values[0] if values else ""
    return hmac.compare_digest(given.encode(), expected.encode())


def _scope_meta(scope: Mapping[str, Any]) -> dict[str, str]:
    """The bits of an ASGI scope that ``client_ip`` reads, in Django's META names."""
    meta: dict[str, str] = {}
    client = scope.get("client")
    if client:
        meta["REMOTE_ADDR"] = str(client[0])
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-for":
            meta["HTTP_X_FORWARDED_FOR"] = value.decode("latin-1")
    return meta


def socket_refusal(
    scope: Mapping[str, Any], *, token: str, allowed_ips: Iterable[str], trusted_proxies: int
) -> str | None:
    """Why this connection must be refused (a reason safe to log), or None to accept it."""
    source = client_ip(_scope_meta(scope), trusted_proxies=trusted_proxies)
    if not ip_allowed(source, allowed_ips):
        return "address_not_allowed"
    if token and not _token_ok(scope.get("query_string", b""), token):
        return "bad_token"
    return None
