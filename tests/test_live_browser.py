"""The live monitor in a real browser: Debian's Chromium driven by Playwright against the
project under daphne (DEBUG off, collected static files), while a call is played against
the same server: signed webhooks and a conversation on the call socket."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connections
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright
from websockets.sync.client import ClientConnection, connect

from tests import retell
from tests.conftest import StartServer
from tests.factories import StaffFactory
from tests.http import post_webhook
from tests.live import PASSWORD, conversation, wait_for_session, webhook_body
from tests.servers import ROOT, RunningServer

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_MS = 15_000  # a bound for a stuck test, never an asserted timing
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CALL_ID = "call_browser_0001"


def chromium_binary() -> str | None:
    candidates = [os.environ.get("CHROMIUM_PATH", ""), "/usr/bin/chromium"]
    found = [path for path in candidates if path and Path(path).is_file()]
    return found[0] if found else shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        pytest.skip(
            "no Chromium binary: install Debian's `chromium` package (.ci/run does) "
            "or set CHROMIUM_PATH"
        )
    return binary


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """collectstatic as the Docker image runs it, so the page is served as in production."""
    root = tmp_path_factory.mktemp("static")
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "collectstatic-only-not-a-secret",
        "RETELL_API_KEY": "collectstatic-only",
        "STATIC_ROOT": str(root),
    }
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return root


@pytest.fixture(scope="module")
def server(asgi_server_factory: StartServer, static_root: Path) -> RunningServer:
    return asgi_server_factory(
        {
            "STATIC_ROOT": str(static_root),
            # Plain HTTP on loopback: cookies marked Secure would never come back.
            "SECURE_COOKIES": "false",
            "LLM_TRANSCRIPT_SAVE_INTERVAL_MS": "50",
            "LIVE_BROADCAST_INTERVAL_MS": "100",
        }
    )


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[BrowserContext]:
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile for every test
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def operator() -> str:
    # Made before the browser starts: sync Playwright runs an event loop in this thread, and
    # Django refuses database calls from a thread with a running loop.
    staff = StaffFactory.create(username="operator")
    staff.user_permissions.add(Permission.objects.get(codename="view_call"))
    return str(staff.username)


def sign_in(page: Page, server: RunningServer, username: str) -> None:
    page.goto(f"{server.url}/live/")
    expect(page).to_have_url(f"{server.url}/admin/login/?next=/live/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{server.url}/live/")


def deliver(server: RunningServer, event: str, **call: Any) -> None:
    body = webhook_body(event, CALL_ID, **call)
    assert post_webhook(server.url, body, retell.signature(body)).status == 200


class CallSocket:
    """Retell's side of the call socket, over a real WebSocket connection."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        assert self.recv()["response_type"] == "config"
        self.greeting = self.recv()["content"]
        self.lines = [self.greeting]

    def recv(self) -> dict[str, Any]:
        return json.loads(self.connection.recv(timeout=WAIT_MS / 1000))

    def send(self, document: dict[str, Any]) -> None:
        self.connection.send(json.dumps(document))

    def caller_says(self, line: str) -> None:
        self.lines.append(line)
        self.send({"interaction_type": "update_only", "transcript": conversation(*self.lines)})

    def agent_answers(self, response_id: int) -> None:
        transcript = conversation(*self.lines)
        self.send(
            {
                "interaction_type": "response_required",
                "response_id": response_id,
                "transcript": transcript,
            }
        )
        words = ""
        while not (frame := self.recv()).get("content_complete"):
            words += frame.get("content", "")
        self.lines.append(words + frame.get("content", ""))
        self.send({"interaction_type": "update_only", "transcript": conversation(*self.lines)})


def session_recorded(call_id: str) -> None:
    try:
        wait_for_session(call_id)
    finally:
        connections.close_all()  # this thread's own connection


def transcript_of(page: Page, scope: str) -> Any:
    return page.locator(f"{scope} .live-turn .live-text")


def test_an_operator_watches_a_call_from_start_to_end(operator, browser, server, artifacts_dir):
    page = browser.pages[0] if browser.pages else browser.new_page()
    sign_in(page, server, operator)
    expect(page.locator("#live-connection")).to_have_text("Live")

    started_ms = retell.now_ms()
    deliver(server, "call_started", start_timestamp=started_ms)
    card = page.locator(f'#live-ongoing .live-card[data-call-id="{CALL_ID}"]')
    expect(card.locator(".live-status")).to_have_text("ongoing")
    expect(card.locator(".live-agent")).to_have_text("Northwind Reception")

    with connect(f"{server.ws_url}/llm-websocket/{CALL_ID}", proxy=None) as connection:
        call = CallSocket(connection)
        for line, response_id in [
            ("Hi! What are your opening hours?", 1),
            ("And where are you located?", 2),
        ]:
            call.caller_says(line)
            expect(transcript_of(page, f'[data-call-id="{CALL_ID}"]')).to_have_text(call.lines)
            call.agent_answers(response_id)
            expect(transcript_of(page, f'[data-call-id="{CALL_ID}"]')).to_have_text(call.lines)
        assert call.lines[2] == "We're open Monday to Friday, nine to five."
        expect(card.locator(".live-turn-count")).to_have_text("5 turns")
        page.screenshot(path=artifacts_dir / "live-calls.png", full_page=True)

        card.click()
        expect(page).to_have_url(f"{server.url}/live/{CALL_ID}/")
        expect(transcript_of(page, "#live-call")).to_have_text(call.lines)
        expect(page.locator("#live-call .live-status")).to_have_text("ongoing")
        call.caller_says("Thanks, that's all.")
        expect(transcript_of(page, "#live-call")).to_have_text(call.lines)
    # On another thread: this one runs Playwright's event loop, where Django refuses queries.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(session_recorded, CALL_ID).result()

    ended_ms = retell.now_ms()
    deliver(
        server,
        "call_ended",
        start_timestamp=started_ms,
        end_timestamp=ended_ms,
        duration_ms=ended_ms - started_ms,
        transcript_object=conversation(*call.lines),
        transcript_with_tool_calls=conversation(*call.lines),
        transcript="",
    )
    expect(page.locator("#live-call .live-status")).to_have_text("ended")
    expect(transcript_of(page, "#live-call")).to_have_text(call.lines)
    admin_link = page.locator('#live-call a[data-field="admin_url"]')
    expect(admin_link).to_have_attribute("href", re.compile(r"^/admin/calls/call/\d+/change/$"))
    page.screenshot(path=artifacts_dir / "live-call.png", full_page=True)

    admin_link.click()
    expect(page.get_by_role("heading", name=CALL_ID)).to_be_visible()
