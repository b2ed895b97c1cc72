"""Fixtures the API tests share: authenticated clients, the pinned call, varied calls."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.factories import (
    BASE_TIME,
    CallEventFactory,
    CallFactory,
    StaffFactory,
    UserFactory,
)


def _client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def user() -> Any:
    return UserFactory.create()


@pytest.fixture
def api(user) -> APIClient:
    return _client_for(user)


@pytest.fixture
def staff_api() -> APIClient:
    return _client_for(StaffFactory.create())


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
