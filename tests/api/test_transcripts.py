"""/api/calls/<call_id>/transcript/: the text and its turns."""

from __future__ import annotations

import pytest

from tests.api.shapes import TRANSCRIPT
from tests.factories import CallFactory

pytestmark = pytest.mark.django_db


def test_it_shows_the_transcript_as_text_and_turns(api, pinned_call):
    response = api.get("/api/calls/call_pinned/transcript/")
    assert response.status_code == 200
    assert response.json() == TRANSCRIPT


def test_it_skips_malformed_transcript_entries(api):
    CallFactory(call_id="call_odd", transcript_object=[{"role": "agent"}, "junk", {"content": "x"}])
    turns = api.get("/api/calls/call_odd/transcript/").json()["turns"]
    assert turns == [{"role": "", "content": "x"}]
