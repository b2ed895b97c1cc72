"""Standard Webhooks signatures for what we forward; no Django imports.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; the key is the
base64-decoded part of the secret after ``whsec_``; the header value is ``v1,`` and the
base64 HMAC-SHA256. Receivers verify with any Standard Webhooks library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside ``secret``; ValueError when it is not ``whsec_`` + base64."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("signing secret must start with whsec_")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("signing secret is not valid base64 after whsec_") from None
    if not key:
        raise ValueError("signing secret is empty")
    return key


def is_valid_secret(secret: str) -> bool:
    try:
        secret_key(secret)
    except ValueError:
        return False
    return True


def signature(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(*, secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(
            secret=secret, message_id=message_id, timestamp=timestamp, body=body
        ),
    }
