"""The REST API: pinned response shapes, filters, search, ordering, pages, auth, bad input."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import ApiToken, token_digest
from accounts.services import api_token_create
from tests.factories import (
    BASE_TIME,
    CallEventFactory,
    CallFactory,
    StaffFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

CALL_ROW = {
    "call_id": "call_pinned",
    "agent_id": "agent_reception",
    "agent_name": "Reception",
    "call_type": "phone_call",
    "direction": "inbound",
    "from_number": "+14155550123",
    "to_number": "+14155559876",
    "status": "ended",
    "started_at": "2026-01-05T09:00:00Z",
    "ended_at": "2026-01-05T09:01:00Z",
    "duration_ms": 60000,
    "disconnection_reason": "user_hangup",
    "user_sentiment": "Positive",
    "call_successful": True,
    "combined_cost": 12.5,
    "last_event": "call_analyzed",
    "last_event_at": "2026-01-05T09:01:00Z",
    "event_count": 1,
}
EVENT_ROW = {
    "id": 1,
    "call_id": "call_pinned",
    "event": "call_ended",
    "source": "webhook",
    "payload_key": "call",
    "first_received_at": "2026-01-05T09:01:00Z",
    "last_received_at": "2026-01-05T09:01:00Z",
    "delivery_count": 1,
}
CALL_DETAIL = {
    **{key: value for key, value in CALL_ROW.items() if key != "event_count"},
    "agent_version": 3,
    "recording_url": "https://example.com/recording.wav",
    "public_log_url": "https://example.com/public.log",
    "metadata": {"crm": "c-1"},
    "dynamic_variables": None,
    "collected_dynamic_variables": None,
    "latency": None,
    "analysis": {
        "call_summary": "The caller needed help.",
        "user_sentiment": "Positive",
        "call_successful": True,
        "in_voicemail": False,
        "custom_analysis_data": {"booked": True},
    },
    "events": [{key: value for key, value in EVENT_ROW.items() if key != "call_id"}],
}
TRANSCRIPT = {
    "call_id": "call_pinned",
    "text": "Agent: Hello.\nUser: Hi, I need help.\n",
    "turns": [
        {"role": "agent", "content": "Hello."},
        {"role": "user", "content": "Hi, I need help."},
    ],
}
RAW_EVENT = {
    **EVENT_ROW,
    "body_sha256": "b" * 64,
    "source_ip": "100.20.5.228",
    "key_fingerprint": "fp_test",
    "payload": {"call_id": "call_pinned", "call_status": "ended"},
    "raw_body": '{"event":"call_ended","call":{"call_id":"call_pinned","call_status":"ended"}}',
}


@pytest.fixture
def user() -> Any:
    return UserFactory.create()


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def staff_api() -> APIClient:
    client = APIClient()
    client.force_authenticate(StaffFactory.create())
    return client


@pytest.fixture
def pinned_call() -> Any:
    call = CallFactory(
        call_id="call_pinned",
        from_number="+14155550123",
        started_at=BASE_TIME,
        metadata={"crm": "c-1"},
        custom_analysis_data={"booked": True},
    )
    payload = {"call_id": "call_pinned", "call_status": "ended"}
    CallEventFactory(
        id=1,
        call=call,
        payload=payload,
        raw_body=json.dumps({"event": "call_ended", "call": payload}, separators=(",", ":")),
        body_sha256="b" * 64,
    )
    return call


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["call_id"] for row in response.json()["results"]]


# ---------------------------------------------------------------- shapes


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


def test_it_shows_the_transcript_as_text_and_turns(api, pinned_call):
    response = api.get("/api/calls/call_pinned/transcript/")
    assert response.status_code == 200
    assert response.json() == TRANSCRIPT


def test_it_skips_malformed_transcript_entries(api):
    CallFactory(call_id="call_odd", transcript_object=[{"role": "agent"}, "junk", {"content": "x"}])
    turns = api.get("/api/calls/call_odd/transcript/").json()["turns"]
    assert turns == [{"role": "", "content": "x"}]


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


# ---------------------------------------------------------------- filters and search


@pytest.fixture
def varied_calls() -> None:
    CallFactory(call_id="c_a", status="ended", agent_id="agent_a", direction="inbound")
    CallFactory(
        call_id="c_b",
        status="not_connected",
        agent_id="agent_b",
        direction="outbound",
        call_type="web_call",
        user_sentiment="",
        call_successful=None,
        call_summary="",
        disconnection_reason="dial_no_answer",
        from_number="+15550001111",
        to_number="+15550002222",
        started_at=BASE_TIME + timedelta(days=2),
        duration_ms=0,
    )
    CallFactory(
        call_id="c_c",
        status="ended",
        agent_id="agent_a",
        user_sentiment="Negative",
        call_successful=False,
        call_summary="Caller asked about a refund.",
        transcript="User: I want my money back.",
        started_at=BASE_TIME + timedelta(days=4),
        duration_ms=120_000,
        combined_cost=Decimal("30"),
    )


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


# ---------------------------------------------------------------- pagination


def walk(api: APIClient, url: str) -> list[list[str]]:
    pages = []
    while url:
        body = api.get(url).json()
        pages.append([row["call_id"] for row in body["results"]])
        url = body["next"]
    return pages


def test_it_pages_through_every_call_once(api):
    for n in range(7):
        CallFactory(call_id=f"call_{n}", started_at=BASE_TIME + timedelta(minutes=n))
    pages = walk(api, "/api/calls/?page_size=3")
    assert pages == [
        ["call_6", "call_5", "call_4"],
        ["call_3", "call_2", "call_1"],
        ["call_0"],
    ]


@pytest.mark.parametrize(
    "ordering", ["duration", "-duration", "cost", "-cost", "started_at", "-started_at"]
)
def test_it_pages_through_ties_and_nulls(api, ordering):
    # Equal values and NULLs are where naive cursors skip or repeat rows.
    for n in range(9):
        CallFactory(
            call_id=f"call_{n}",
            duration_ms=None if n % 3 == 0 else 1000 * (n % 2),
            combined_cost=None if n % 4 == 0 else Decimal(n % 2),
            started_at=None if n == 4 else BASE_TIME,
        )
    pages = walk(api, f"/api/calls/?page_size=2&ordering={ordering}")
    seen = [call_id for page in pages for call_id in page]
    assert sorted(seen) == [f"call_{n}" for n in range(9)]
    assert len(pages) == 5


def test_it_keeps_the_filters_in_the_next_link(api):
    for n in range(3):
        CallFactory(call_id=f"call_{n}", agent_id="agent_a")
    CallFactory(call_id="call_other", agent_id="agent_b")
    pages = walk(api, "/api/calls/?agent=agent_a&page_size=2")
    assert sorted(sum(pages, [])) == ["call_0", "call_1", "call_2"]


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


@pytest.mark.parametrize("query", ["received_after=soon", "ordering=event", "page_size=-1"])
def test_it_answers_400_to_bad_event_input(api, query):
    assert api.get(f"/api/events/?{query}").status_code == 400


# ---------------------------------------------------------------- query counts


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


def test_it_lists_50_events_in_one_query(api, django_assert_num_queries):
    CallEventFactory.create_batch(50)
    with django_assert_num_queries(1):
        assert len(api.get("/api/events/?page_size=50").json()["results"]) == 50


# ---------------------------------------------------------------- CSV export


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


# ---------------------------------------------------------------- auth

ENDPOINTS = [
    "/api/calls/",
    "/api/calls/call_pinned/",
    "/api/calls/call_pinned/transcript/",
    "/api/calls/export.csv",
    "/api/events/",
    "/api/events/1/",
    "/api/events/1/raw/",
    "/api/stats/",
    "/api/schema/",
    "/api/docs/",
]


@pytest.mark.usefixtures("pinned_call")
@pytest.mark.parametrize("url", ENDPOINTS)
def test_it_answers_401_json_without_credentials(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json() == {"detail": "Authentication credentials were not provided."}


@pytest.mark.usefixtures("pinned_call")
@pytest.mark.parametrize("url", ENDPOINTS)
def test_it_serves_every_endpoint_to_a_bearer_token(url):
    _, token = api_token_create(user=StaffFactory.create())
    response = APIClient().get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer rh_wrong", "Bearer", "Bearer two parts", "bearer rh_wrong"],
)
def test_it_refuses_a_bad_token(header):
    response = APIClient().get("/api/calls/", headers={"Authorization": header})
    assert response.status_code == 401


def test_it_refuses_the_token_of_an_inactive_user():
    user = UserFactory.create(is_active=False)
    _, token = api_token_create(user=user)
    response = APIClient().get("/api/calls/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_it_records_when_a_token_was_used(user):
    row, token = api_token_create(user=user)
    assert row.last_used_at is None
    APIClient().get("/api/calls/", headers={"Authorization": f"Bearer {token}"})
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_it_accepts_an_admin_session(user):
    client = APIClient()
    client.force_login(user)
    assert client.get("/api/calls/").status_code == 200


@pytest.mark.usefixtures("pinned_call")
def test_it_keeps_raw_bodies_from_non_staff(api):
    response = api.get("/api/events/1/raw/")
    assert response.status_code == 403
    assert "raw_body" not in response.content.decode()


def test_it_keeps_the_webhook_on_signatures_only():
    # No API credentials make an unsigned webhook acceptable.
    _, token = api_token_create(user=StaffFactory.create())
    response = APIClient().post(
        "/webhook",
        data=b"{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}


def test_create_api_token_prints_the_token_last_and_stores_only_its_digest(user):
    out, err = StringIO(), StringIO()
    call_command("create_api_token", user.username, "--name", "ci", stdout=out, stderr=err)
    token = out.getvalue().strip().splitlines()[-1]
    assert token.startswith("rh_")
    row = ApiToken.objects.get()
    assert (row.user, row.name, row.prefix) == (user, "ci", token[:10])
    assert row.digest == token_digest(token)
    assert token not in row.digest
    assert (
        APIClient().get("/api/calls/", headers={"Authorization": f"Bearer {token}"}).status_code
        == 200
    )


def test_create_api_token_refuses_an_unknown_user():
    with pytest.raises(Exception, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost", stdout=StringIO(), stderr=StringIO())


# ---------------------------------------------------------------- OpenAPI


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
