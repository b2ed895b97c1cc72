"""Cursor pages over /api/calls/: every call once, through ties and NULLs, filters kept."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tests.factories import BASE_TIME, CallFactory

pytestmark = pytest.mark.django_db


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
