"""The outbox against a real HTTP receiver on loopback, run by django-tasks-db's worker.

Every test here starts with no destination from the environment and short, fixed backoff.
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _outbox_settings(settings: Any, tmp_path: Any) -> None:
    settings.SLACK_WEBHOOK_URL = ""
    settings.FORWARD_URLS = []
    settings.FORWARD_EVENTS = []
    settings.RECORDINGS_CAPTURE = False
    settings.SITE_URL = "https://hub.example.com"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.OUTBOX_MAX_ATTEMPTS = 4
    settings.OUTBOX_BACKOFF_SECONDS = 30
    settings.OUTBOX_BACKOFF_MAX_SECONDS = 100
