"""Helpers for the live monitor's tests: signed-in browsers' cookies, a call to play."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.test import Client, override_settings

from tests import retell
from tests.factories import StaffFactory, UserFactory

PASSWORD = "pw-for-tests-only"  # tests/factories.py's


def session_cookie(*, staff: bool = True, secret_key: str | None = None) -> str:
    """A ``sessionid=...`` cookie of a freshly signed-in user (staff or not); for a server
    process, signed with that server's ``secret_key``."""
    factory = StaffFactory if staff else UserFactory
    client = Client()
    with override_settings(SECRET_KEY=secret_key or settings.SECRET_KEY):
        client.force_login(factory.create())
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def webhook_body(event: str, call_id: str, **call: Any) -> bytes:
    """A delivery of ``event`` for ``call_id`` (fixture values, ``call`` overriding them)."""
    document = retell.with_call_id(retell.fixture_json(event), call_id)
    document["call"].update(call)
    return retell.compact(document)


def conversation(*lines: str) -> list[dict[str, str]]:
    """Alternating turns, the agent first, as the call socket's transcripts carry them."""
    return [
        {"role": "agent" if index % 2 == 0 else "user", "content": line}
        for index, line in enumerate(lines)
    ]
