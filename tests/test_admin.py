"""The operator console: lists, the call page, replay, CSV, dashboard, and who may see them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from calls.masking import mask_phone
from calls.models import AgentProfile, Call, CallEvent
from tests import retell
from tests.factories import CallEventFactory, CallFactory, StaffFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/calls/call/"
EVENTS = "/admin/calls/callevent/"
DASHBOARD = "/admin/calls/call/dashboard/"
CALL_ID = "call_2f7c1e9a4b3d4e0f8a6b"


@pytest.fixture
def delivered(signed_post) -> Call:
    """A call as the webhook builds it from three real deliveries."""
    for name in ("call_started", "call_ended", "call_analyzed"):
        assert signed_post(retell.fixture_bytes(name)).status_code == 200
    return Call.objects.get(call_id=CALL_ID)


def page(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def action(client: Client, url: str, name: str, pks: list[int]) -> Any:
    return client.post(url, {"action": name, "_selected_action": [str(pk) for pk in pks]})


def test_mask_phone_keeps_the_shape_and_the_last_four_digits():
    assert mask_phone("+14155550123") == "+•••••••0123"
    assert mask_phone("+44 20 7946 0958") == "+•• •• •••• 0958"
    assert mask_phone("123") == "123"


def test_changelist_shows_the_columns_operators_need(admin_client, delivered):
    html = page(admin_client.get(CHANGELIST))
    for text in ("Northwind Reception", "inbound", "+•••••••0123", "ended", "0:14", "Dashboard"):
        assert text in html
    assert "+14155550123" not in html  # the caller's number is masked in the list


def test_changelist_queries_do_not_grow_with_the_calls(admin_client):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            page(admin_client.get(CHANGELIST))
        return len(queries)

    for call in CallFactory.create_batch(5):
        CallEventFactory(call=call)
    few = count()
    for call in CallFactory.create_batch(45):
        CallEventFactory(call=call)
    assert count() == few


@pytest.mark.parametrize(
    "query",
    ["?q=0123", "?status__exact=ended", "?started_at__year=2026", "?user_sentiment=Positive"],
)
def test_changelist_filters_and_searches(admin_client, delivered, query):
    assert CALL_ID in page(admin_client.get(CHANGELIST + query))


def test_change_page_reads_like_a_call(admin_client, delivered):
    html = page(admin_client.get(f"{CHANGELIST}{delivered.pk}/change/"))
    assert "<strong>Agent:</strong> Hi, this is Ava from Northwind Dental." in html
    assert "<strong>User:</strong> Hola, soy José Núñez." in html
    assert f'<audio controls preload="none" src="{delivered.recording_url}">' in html
    assert f'href="{delivered.public_log_url}"' in html
    assert delivered.call_summary in html
    assert html.count(" bytes</summary>") == 3  # one raw body per event
    assert "&quot;event&quot;: &quot;call_analyzed&quot;" in html  # pretty-printed, escaped
    # The call object (call_analyzed's): its keys at the top level, not inside an envelope.
    assert f"\n  &quot;call_id&quot;: &quot;{CALL_ID}&quot;" in html
    assert 'name="_save"' not in html  # read-only


def test_events_list_reads_no_raw_body_and_no_query_per_row(admin_client):
    for call in CallFactory.create_batch(5):
        CallEventFactory(call=call)
    with CaptureQueriesContext(connection) as queries:
        html = page(admin_client.get(EVENTS))
    assert html.count('class="field-event"') == 5
    listing = [q["sql"] for q in queries if "calls_callevent" in q["sql"]]
    assert listing, "the list reads the events"
    assert not any('"raw_body"' in sql for sql in listing), "the list never loads raw bodies"
    for call in CallFactory.create_batch(20):
        CallEventFactory(call=call)
    with CaptureQueriesContext(connection) as more:
        page(admin_client.get(EVENTS))
    assert len(more) == len(queries)


def test_event_page_pretty_prints_the_raw_body(admin_client, delivered):
    event = CallEvent.objects.get(event="call_ended")
    html = page(admin_client.get(f"{EVENTS}{event.pk}/change/"))
    assert "&quot;call_status&quot;: &quot;ended&quot;" in html


def break_call(call: Call) -> None:
    """What a merge bug might have left behind: lost values and lost versions."""
    Call.objects.filter(pk=call.pk).update(status="", call_summary="", field_versions={})


def test_replay_dry_run_shows_changes_and_saves_nothing(admin_client, delivered):
    break_call(delivered)
    html = page(action(admin_client, CHANGELIST, "replay_dry_run", [delivered.pk]))
    assert "Dry run: 3 events replayed" in html
    assert "<td>status</td>" in html
    assert "<td>call_summary</td>" in html
    assert 'value="replay"' in html  # the button that does it for real
    assert Call.objects.get(pk=delivered.pk).status == ""


def test_replay_repairs_the_call(admin_client, delivered):
    expected = Call.objects.values().get(pk=delivered.pk)
    break_call(delivered)
    response = action(admin_client, CHANGELIST, "replay", [delivered.pk])
    assert response.status_code == 302
    repaired = Call.objects.values().get(pk=delivered.pk)
    ignore = {"updated_at"}
    assert {k: v for k, v in repaired.items() if k not in ignore} == {
        k: v for k, v in expected.items() if k not in ignore
    }
    html = page(admin_client.get(CHANGELIST))
    assert "Replayed 3 events (0 skipped)" in html


def test_replaying_a_healthy_call_changes_nothing(admin_client, delivered):
    html = page(action(admin_client, CHANGELIST, "replay_dry_run", [delivered.pk]))
    assert "Replaying would change nothing" in html


def test_replay_of_selected_events(admin_client, delivered):
    break_call(delivered)
    analyzed = CallEvent.objects.get(event="call_analyzed")
    html = page(action(admin_client, EVENTS, "replay_dry_run", [analyzed.pk]))
    assert "Dry run: 1 events replayed" in html
    action(admin_client, EVENTS, "replay", [analyzed.pk])
    assert Call.objects.get(pk=delivered.pk).status == "ended"


def test_replay_is_offered_only_to_those_who_may_change_calls(client, delivered):
    staff = StaffFactory.create()
    staff.user_permissions.add(*_view_permissions())
    client.force_login(staff)
    html = page(client.get(CHANGELIST))
    assert "replay_dry_run" not in html
    assert "export_csv" in html
    break_call(delivered)
    action(client, CHANGELIST, "replay", [delivered.pk])
    assert Call.objects.get(pk=delivered.pk).status == ""


def _view_permissions() -> list[Any]:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(codename__in=["view_call", "view_callevent"]))


def test_csv_action_streams_the_selection(admin_client):
    chosen = CallFactory.create(call_id="call_chosen")
    other = CallFactory.create(call_id="call_other")
    response = action(admin_client, CHANGELIST, "export_csv", [chosen.pk])
    assert response.status_code == 200
    assert response.streaming
    lines = response.getvalue().decode().splitlines()
    assert lines[0].startswith("call_id,agent_id,")
    assert [line.split(",")[0] for line in lines[1:]] == ["call_chosen"]
    assert other.call_id not in "".join(lines)


def test_dashboard_shows_today_this_week_and_a_chart(admin_client):
    from django.utils import timezone

    CallFactory(started_at=timezone.now(), user_sentiment="Negative")
    CallFactory(started_at=timezone.now(), user_sentiment="Positive", call_successful=False)
    html = page(admin_client.get(DASHBOARD))
    assert "<h2>Today</h2>" in html
    assert "<h2>This week</h2>" in html
    assert "<svg" in html
    assert html.count("<rect") >= 2
    assert "1 negative" in html  # a bar segment's tooltip
    assert "Success rate</td><td>50%" in html
    assert "http" not in html.split("<svg", 1)[1].split("</svg>", 1)[0].replace(
        "http://www.w3.org", ""
    )  # nothing fetched from elsewhere


@pytest.mark.parametrize(
    "url", [CHANGELIST, f"{CHANGELIST}1/change/", DASHBOARD, EVENTS, f"{EVENTS}1/change/"]
)
def test_anonymous_users_are_sent_to_the_login(client, url):
    CallEventFactory(id=1, call=CallFactory(id=1))
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("name", ["replay", "replay_dry_run", "export_csv"])
def test_anonymous_users_cannot_run_actions(client, name):
    call = CallFactory.create(status="")
    response = action(client, CHANGELIST, name, [call.pk])
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_permissions_cannot_open_the_dashboard(client):
    client.force_login(StaffFactory())
    assert client.get(DASHBOARD).status_code == 403


def test_agent_profiles_are_editable_by_operators(admin_client):
    assert admin_client.get("/admin/calls/agentprofile/add/").status_code == 200
    profile = AgentProfile.objects.create(agent_id="agent_console", name="Console")
    page_html = page(admin_client.get(f"/admin/calls/agentprofile/{profile.pk}/change/"))
    assert "agent_console" in page_html
    listing = page(admin_client.get("/admin/calls/agentprofile/?q=console"))
    assert "agent_console" in listing


def test_agent_profiles_are_refused_to_anonymous_users(client):
    response = client.get("/admin/calls/agentprofile/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
