"""The redaction filter on real records, through the handlers settings.LOGGING configured."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from django.conf import settings

from retellhub.logging import REDACTED, RedactingFilter, redact_text
from tests import retell

NUMBER = "+14155550123"
TRANSCRIPT = "Agent: Hi, this is Ava.\nUser: Hola, soy José Núñez."


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """What the configured console handler writes, for the duration of a test."""
    handler = next(
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(f, RedactingFilter) for f in handler.filters)
    )
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    yield stream
    handler.setStream(previous)


def test_every_configured_handler_redacts():
    handlers = settings.LOGGING["handlers"]
    assert handlers
    assert all("redact" in handler.get("filters", []) for handler in handlers.values())


def test_it_masks_phone_numbers_passed_as_arguments(console):
    logging.getLogger("calls.views").warning("caller %s hung up on %s", NUMBER, "(415) 555-9876")
    line = console.getvalue()
    assert NUMBER not in line
    assert "555-9876" not in line
    assert f"caller {REDACTED} hung up on {REDACTED}" in line


def test_it_masks_transcripts_and_numbers_inside_logged_payloads(console):
    payload = retell.fixture_json("call_ended")["call"]
    logging.getLogger("calls").info("unexpected payload %s", payload)  # a dict, repr'd
    logging.getLogger("calls").info("raw body %s", retell.fixture_bytes("call_ended").decode())
    output = console.getvalue()
    assert "Núñez" not in output  # in the transcript and in the dynamic variables
    assert "Thursday" not in output
    assert "Hola" not in output  # also word by word, in transcript_object
    assert NUMBER not in output
    assert "call_2f7c1e9a4b3d4e0f8a6b" in output  # ids stay: they are how logs get read
    assert "1767225600000" in output  # so do timestamps, though they are long numbers


def test_it_masks_secrets_in_any_logger(console, settings):
    settings.FORWARD_SIGNING_SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cw=="
    settings.SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T01/B02/abcdefgh"
    logging.getLogger("django_tasks").error(
        "posting to %s with %s failed; key %s; Authorization: Bearer abc.def.ghi; django %s",
        settings.SLACK_WEBHOOK_URL,
        settings.FORWARD_SIGNING_SECRET,
        retell.PRIMARY_KEY,
        settings.SECRET_KEY,
    )
    line = console.getvalue()
    for secret in (
        "abcdefgh",
        "c2VjcmV0LWZvci10ZXN0cw",
        retell.PRIMARY_KEY,
        "abc.def.ghi",
        settings.SECRET_KEY,
    ):
        assert secret not in line
    assert line.count(REDACTED) == 5


def test_it_masks_tracebacks(console):
    try:
        raise ValueError(f"cannot dial {NUMBER}")
    except ValueError:
        logging.getLogger("notifications").exception("delivery failed")
    output = console.getvalue()
    assert "Traceback" in output
    assert "ValueError: cannot dial [redacted]" in output
    assert NUMBER not in output


def test_it_masks_sensitive_extra_fields_on_the_record():
    logger = logging.getLogger("calls.views")
    record = logger.makeRecord(
        logger.name,
        logging.INFO,
        __file__,
        1,
        "stored",
        (),
        None,
        extra={"transcript": TRANSCRIPT, "note": f"from {NUMBER}", "call_id": "call_1"},
    )
    assert RedactingFilter().filter(record) is True
    assert record.transcript == REDACTED  # type: ignore[attr-defined]
    assert record.note == f"from {REDACTED}"  # type: ignore[attr-defined]
    assert record.call_id == "call_1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text",
    [
        "webhook stored call_ended for call call_2f7c1e9a4b3d4e0f8a6b",
        "delivery 12 (forward) attempt 3: 503 pending",
        "took 1767225614870 ms at 2026-01-01 00:00:14",
        "GET /admin/calls/call/1234567/change/ 200",
    ],
)
def test_it_leaves_ordinary_lines_alone(text):
    assert redact_text(text) == text
