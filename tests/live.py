"""Helpers for the live monitor's tests: signed-in browsers' cookies, a call to play."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.test import Client, override_settings

from calls.models import CallEvent
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


def wait_for_session(call_id: str, timeout: float = 15) -> None:
    """Until the server has recorded the call socket's session (after the socket closed).

    The test database is flushed after each test, and on PostgreSQL a flush racing that
    write can deadlock.
    """
    sessions = CallEvent.objects.filter(call__call_id=call_id, event="llm_session")
    deadline = time.monotonic() + timeout
    while not sessions.exists():
        assert time.monotonic() < deadline, f"no socket session recorded for {call_id}"
        time.sleep(0.05)
