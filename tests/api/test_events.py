"""/api/events/: pinned shapes, the staff-only raw body, filters, bad input, query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.api.shapes import EVENT_ROW, RAW_EVENT
from tests.factories import BASE_TIME, CallEventFactory, CallFactory

pytestmark = pytest.mark.django_db


def test_it_lists_events(api, pinned_call):
    response = api.get("/api/events/")
    assert response.status_code == 200
    assert response.json() == {"next": None, "results": [EVENT_ROW]}


def test_it_shows_one_event_without_its_body(api, pinned_call):
    assert api.get("/api/events/1/").json() == EVENT_ROW
    assert api.get("/api/events/999/").status_code == 404


def test_it_shows_the_raw_event_to_staff(staff_api, pinned_call):
    response = staff_api.get("/api/events/1/raw/")
    assert response.status_code == 200
    assert response.json() == RAW_EVENT


def test_it_filters_events(api):
    first = CallFactory(call_id="call_one")
    CallEventFactory(call=first, event="call_started", first_received_at=BASE_TIME)
    CallEventFactory(
        call=first, event="call_ended", first_received_at=BASE_TIME + timedelta(hours=1)
    )
    CallEventFactory(event="call_ended", first_received_at=BASE_TIME + timedelta(hours=2))

    def events(query: str) -> list[tuple[str, str]]:
        rows = api.get(f"/api/events/?{query}").json()["results"]
        return [(row["call_id"], row["event"]) for row in rows]

    assert events("call=call_one") == [("call_one", "call_ended"), ("call_one", "call_started")]
    assert [name for _, name in events("event=call_started")] == ["call_started"]
    assert len(events("received_after=2026-01-05T09:30:00Z")) == 2
    assert events("received_before=2026-01-05T09:30:00Z") == [("call_one", "call_started")]
    assert len(events("ordering=received_at")) == 3


@pytest.mark.parametrize("query", ["received_after=soon", "ordering=event", "page_size=-1"])
def test_it_answers_400_to_bad_event_input(api, query):
    assert api.get(f"/api/events/?{query}").status_code == 400


def test_it_lists_50_events_in_one_query(api, django_assert_num_queries):
    CallEventFactory.create_batch(50)
    with django_assert_num_queries(1):
        assert len(api.get("/api/events/?page_size=50").json()["results"]) == 50
