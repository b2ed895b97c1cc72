"""/api/calls/: pinned shapes, filters, search, ordering, bad input, query counts."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.api.shapes import CALL_DETAIL, CALL_ROW
from tests.factories import BASE_TIME, CallEventFactory, CallFactory

pytestmark = pytest.mark.django_db


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["call_id"] for row in response.json()["results"]]


def test_it_lists_calls(api, pinned_call):
    response = api.get("/api/calls/")
    assert response.status_code == 200
    assert response.json() == {"next": None, "results": [CALL_ROW]}


def test_it_shows_one_call_with_analysis_and_events(api, pinned_call):
    response = api.get("/api/calls/call_pinned/")
    assert response.status_code == 200
    assert response.json() == CALL_DETAIL


def test_it_shows_no_analysis_before_call_analyzed(api):
    CallFactory(call_id="call_early", call_summary="", user_sentiment="", call_successful=None)
    assert api.get("/api/calls/call_early/").json()["analysis"] is None


def test_it_answers_404_for_an_unknown_call(api):
    response = api.get("/api/calls/call_nope/")
    assert (response.status_code, response.json()) == (
        404,
        {"detail": "No call with this call_id."},
    )
    assert api.get("/api/calls/call_nope/transcript/").status_code == 404


@pytest.mark.usefixtures("varied_calls")
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=not_connected", ["c_b"]),
        ("agent=agent_a", ["c_c", "c_a"]),
        ("direction=outbound", ["c_b"]),
        ("call_type=web_call", ["c_b"]),
        ("user_sentiment=Negative", ["c_c"]),
        ("successful=true", ["c_a"]),
        ("successful=false", ["c_c"]),
        ("disconnection_reason=dial_no_answer", ["c_b"]),
        ("from_number=%2B15550001111", ["c_b"]),
        ("to_number=%2B15550002222", ["c_b"]),
        ("started_after=2026-01-06T00:00:00Z", ["c_c", "c_b"]),
        ("started_before=2026-01-06T00:00:00Z", ["c_a"]),
        ("started_after=2026-01-06T00:00:00Z&started_before=2026-01-08T00:00:00Z", ["c_b"]),
        ("has_analysis=true", ["c_c", "c_a"]),
        ("has_analysis=false", ["c_b"]),
        ("agent=agent_a&user_sentiment=Positive", ["c_a"]),
    ],
)
def test_it_filters_calls(api, query, expected):
    assert ids(api.get(f"/api/calls/?{query}")) == expected


@pytest.mark.usefixtures("varied_calls")
@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("c_b", ["c_b"]),  # call id
        ("0001111", ["c_b"]),  # from number
        ("0002222", ["c_b"]),  # to number
        ("REFUND", ["c_c"]),  # summary, any case
        ("money back", ["c_c"]),  # transcript
        ("nothing like this", []),
    ],
)
def test_it_searches_calls(api, term, expected):
    assert ids(api.get("/api/calls/", {"search": term})) == expected


@pytest.mark.usefixtures("varied_calls")
@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        ("", ["c_c", "c_b", "c_a"]),
        ("-started_at", ["c_c", "c_b", "c_a"]),
        ("started_at", ["c_a", "c_b", "c_c"]),
        ("duration", ["c_b", "c_a", "c_c"]),
        ("-duration", ["c_c", "c_a", "c_b"]),
        ("cost", ["c_a", "c_b", "c_c"]),
        ("-cost", ["c_c", "c_b", "c_a"]),
    ],
)
def test_it_orders_calls(api, ordering, expected):
    CallFactory.reset_sequence()
    assert ids(api.get("/api/calls/", {"ordering": ordering} if ordering else {})) == expected


def cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "query",
    [
        "status=finished",
        "direction=sideways",
        "user_sentiment=happy",
        "successful=maybe",
        "has_analysis=perhaps",
        "started_after=yesterday",
        "started_before=2026-13-45T00:00:00Z",
        "search=" + "x" * 201,
        "page_size=0",
        "page_size=501",
        "page_size=ten",
        "ordering=agent",
        "cursor=not-base64!",
        "cursor=" + cursor(["-started_at", "not a date", 1]),
        "cursor=" + cursor(["-started_at", "2026-01-05T09:00:00", 1]),
        "cursor=" + cursor(["-duration", 5, 1]),
        "ordering=duration&cursor=" + cursor(["duration", "x", 1]),
        "ordering=duration&cursor=" + cursor(["duration", 10**30, 1]),
        "ordering=cost&cursor=" + cursor(["cost", "1e400", 1]),
        "cursor=" + cursor(["-started_at", None, 2**70]),
        "cursor=" + cursor(["-started_at", "9999-12-31T23:59:59-10:00", 1]),
        "cursor=" + cursor({"a": 1}),
    ],
)
def test_it_answers_400_to_bad_list_input(api, query):
    CallFactory()
    response = api.get(f"/api/calls/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()  # says which parameter and why


def test_it_reads_any_iso_offset_even_those_postgresql_refuses(api):
    # PostgreSQL stores offsets only up to ±15:59; schemathesis found -22:30 gave a 500.
    CallFactory(started_at=BASE_TIME)
    assert ids(api.get("/api/calls/", {"started_after": "2026-01-04T12:00:00-22:30"})) == []
    assert len(ids(api.get("/api/calls/", {"started_before": "2026-01-06T08:00:00+22:00"}))) == 1
    assert (
        api.get("/api/events/", {"received_before": "0654-10-08T14:19:57-16:56"}).status_code == 200
    )


@pytest.mark.parametrize(
    "query",
    [
        {"started_after": "9999-12-31T23:59:59-10:00"},  # past datetime.max in UTC
        {"started_before": "0001-01-01T00:00:00+05:00"},  # before datetime.min in UTC
    ],
)
def test_it_answers_400_to_times_without_a_utc_equivalent(api, query):
    assert api.get("/api/calls/", query).status_code == 400


def test_it_names_the_bad_parameter(api):
    response = api.get("/api/calls/?page_size=9999")
    assert response.json() == {"page_size": ["An integer from 1 to 500."]}


def test_it_lists_50_calls_with_events_in_a_fixed_number_of_queries(api, django_assert_num_queries):
    for call in CallFactory.create_batch(50):
        CallEventFactory.create_batch(3, call=call)
    with django_assert_num_queries(1):
        response = api.get("/api/calls/?page_size=50")
    assert len(response.json()["results"]) == 50
    assert {row["event_count"] for row in response.json()["results"]} == {3}


def test_it_shows_a_call_with_many_events_in_two_queries(api, django_assert_num_queries):
    call = CallFactory()
    CallEventFactory.create_batch(20, call=call)
    with django_assert_num_queries(2):
        response = api.get(f"/api/calls/{call.call_id}/")
    assert len(response.json()["events"]) == 20
