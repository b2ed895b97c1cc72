"""/api/calls/export.csv: the columns, the list's filters, formula defusing, bad input."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import CallFactory

pytestmark = pytest.mark.django_db


def export(api: APIClient, query: str = "") -> list[str]:
    response = api.get(f"/api/calls/export.csv{query}")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="calls.csv"'
    return response.getvalue().decode().splitlines()


def test_it_exports_calls_as_csv(api, pinned_call):
    assert export(api) == [
        "call_id,agent_id,agent_name,call_type,direction,from_number,to_number,status,"
        "started_at,ended_at,duration_ms,disconnection_reason,user_sentiment,call_successful,"
        "combined_cost,last_event,last_event_at,call_summary",
        "call_pinned,agent_reception,Reception,phone_call,inbound,+14155550123,+14155559876,"
        "ended,2026-01-05T09:00:00+00:00,2026-01-05T09:01:00+00:00,60000,user_hangup,Positive,"
        "True,12.5000,call_analyzed,2026-01-05T09:01:00+00:00,The caller needed help.",
    ]


@pytest.mark.usefixtures("varied_calls")
def test_it_exports_with_the_list_filters(api):
    lines = export(api, "?agent=agent_a&search=refund")
    assert [line.split(",")[0] for line in lines[1:]] == ["c_c"]


def test_it_defuses_spreadsheet_formulas_in_the_export(api):
    CallFactory(call_summary='=HYPERLINK("http://evil")', from_number="+15550001111")
    row = export(api)[1]
    assert "'=HYPERLINK" in row
    assert ",+15550001111," in row


def test_it_answers_400_to_bad_export_filters(api):
    response = api.get("/api/calls/export.csv?status=nope")
    assert response.status_code == 400
    assert "status" in response.json()
