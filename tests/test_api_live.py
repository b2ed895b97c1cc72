"""The API on the real ASGI servers: a bounded schemathesis run and the CSV stream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from accounts.services import api_token_create
from calls.models import Call
from tests import http
from tests.factories import CallEventFactory, CallFactory, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMATHESIS = Path(sys.executable).parent / "st"
# Bounded so the run takes seconds, not minutes; the seed keeps it reproducible.
MAX_EXAMPLES = 12
SEED = 20260105


@pytest.fixture
def token() -> str:
    for call in CallFactory.create_batch(3):
        CallEventFactory.create(call=call)
    # Known from the call socket only, before any webhook: no direction, status or analysis.
    unknown = CallFactory.create(direction="", status="", user_sentiment="", call_summary="")
    CallEventFactory.create(call=unknown)
    _, plain = api_token_create(user=StaffFactory.create())
    return plain


def test_schemathesis_finds_no_5xx_and_no_response_outside_the_schema(asgi_server, token, tmp_path):
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{asgi_server.url}/api/schema/",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error,response_schema_conformance,content_type_conformance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "20",
        "--no-color",
        "--report-dir",
        str(tmp_path),
    ]
    # Run from tmp_path: schemathesis keeps a .schemathesis/ folder in its working directory.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=110, check=False, cwd=tmp_path
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:] + asgi_server.log()[-3000:]
    assert "Tested: 8" in output  # every operation in the schema was exercised
    assert "No issues found" in output


def test_the_export_streams_over_asgi(asgi_server, token):
    reply = http.request(
        f"{asgi_server.url}/api/calls/export.csv",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status == 200
    lines = reply.body.decode().splitlines()
    assert lines[0].startswith("call_id,")
    assert len(lines) == 1 + Call.objects.count()  # the header, then one row per call
    # Django warns when it must buffer a sync iterator under ASGI; the export gives it an
    # async one, so the whole file is never held in memory.
    assert "must consume synchronous iterators" not in asgi_server.log()


def test_anonymous_requests_get_401_json_over_asgi(asgi_server):
    reply = http.request(f"{asgi_server.url}/api/calls/")
    assert reply.status == 401
    assert reply.json() == {"detail": "Authentication credentials were not provided."}
