"""The OpenAPI schema and the Swagger UI, served without a CDN."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_the_schema_generates_without_warnings():
    out = StringIO()
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out
    )
    schema = json.loads(out.getvalue())
    assert sorted(schema["paths"]) == [
        "/api/calls/",
        "/api/calls/export.csv",
        "/api/calls/{call_id}/",
        "/api/calls/{call_id}/transcript/",
        "/api/events/",
        "/api/events/{id}/",
        "/api/events/{id}/raw/",
        "/api/stats/",
    ]
    parameters = {p["name"] for p in schema["paths"]["/api/calls/"]["get"]["parameters"]}
    assert parameters == {
        "agent",
        "call_type",
        "cursor",
        "direction",
        "disconnection_reason",
        "from_number",
        "has_analysis",
        "ordering",
        "page_size",
        "search",
        "started_after",
        "started_before",
        "status",
        "successful",
        "to_number",
        "user_sentiment",
    }
    assert set(schema["components"]["securitySchemes"]) == {"bearerAuth", "cookieAuth"}


def test_swagger_ui_is_served_without_a_cdn(api):
    page = api.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn" not in page.lower()
