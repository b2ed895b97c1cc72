"""retellhub/sqlite3: Django's SQLite backend, keeping its placeholder rewriting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_zone
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.db.backends.sqlite3.base import SQLiteCursorWrapper as DjangoCursor
from django.db.backends.sqlite3.operations import DatabaseOperations as DjangoOperations
from django.test import override_settings
from django.utils import timezone

from calls.models import Call
from retellhub.sqlite3 import base

pytestmark = pytest.mark.django_db  # the datetime comparison needs none, the rest SQLite

STATEMENTS = [
    "SELECT %s",
    "UPDATE t SET a = %s, b = %s WHERE c LIKE '100%%' AND d = %s",
    "SELECT '%%s', %s",  # an escaped %s stays literal
    "SELECT 1",
]


@pytest.fixture
def sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend: runs on the embedded default (the CI's first pass)")


@pytest.mark.usefixtures("sqlite_only")
@pytest.mark.parametrize("statement", STATEMENTS)
def test_statements_are_rewritten_as_djangos_backend_rewrites_them(statement: str) -> None:
    with connection.cursor() as wrapped:
        cursor = wrapped.cursor
        assert isinstance(cursor, base.SQLiteCursorWrapper)
        djangos = DjangoCursor.convert_query(cursor, statement)  # type: ignore[attr-defined]
        assert cursor.convert_query(statement) == djangos  # rewritten, then remembered
        assert cursor.convert_query(statement) == djangos


@pytest.mark.usefixtures("sqlite_only")
def test_a_repeated_statement_is_rewritten_once_and_long_ones_every_time() -> None:
    statement = "SELECT %s, %s -- test_sqlite_backend"
    long_statement = "SELECT %s" + " " * base.CACHED_LENGTH
    with connection.cursor() as wrapped:
        cursor = wrapped.cursor
        before = base._qmark.cache_info()
        for _ in range(3):
            assert cursor.convert_query(statement) == "SELECT ?, ? -- test_sqlite_backend"
            assert cursor.convert_query(long_statement).startswith("SELECT ? ")
        after = base._qmark.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)


@pytest.mark.usefixtures("sqlite_only")
def test_named_parameters_keep_djangos_rewriting() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %(first)s || %(second)s", {"first": "a", "second": "b"})
        assert cursor.fetchone() == ("ab",)


@pytest.mark.usefixtures("sqlite_only")
def test_the_orm_and_raw_statements_work_through_it() -> None:
    Call.objects.create(call_id="call_backend", agent_name="100% sure")
    assert Call.objects.filter(agent_name__contains="100%").get().call_id == "call_backend"
    with connection.cursor() as cursor:
        cursor.execute("SELECT call_id FROM calls_call WHERE agent_name LIKE %s", ["100%%"])
        assert cursor.fetchone() == ("call_backend",)


DATETIMES = [
    datetime(2026, 11, 27, 18, 30, 5, 123456, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("Europe/Berlin")),  # the DST change
    datetime(2026, 1, 1, tzinfo=fixed_zone(timedelta(hours=-5, minutes=-30))),
    datetime(2026, 1, 1, 12, 0, tzinfo=UTC).replace(tzinfo=None),  # naive
    None,
]


@pytest.mark.parametrize("zone", [UTC, ZoneInfo("America/Sao_Paulo"), None])
@pytest.mark.parametrize("value", DATETIMES)
def test_datetimes_are_adapted_as_djangos_backend_adapts_them(value: Any, zone: object):
    # ``zone`` is the connection's time zone; None is what Django has when USE_TZ is off.
    fake: Any = SimpleNamespace(timezone=zone)
    ours, djangos = base.DatabaseOperations(fake), DjangoOperations(fake)
    aware = isinstance(value, datetime) and value.utcoffset() is not None
    if zone is None and aware:
        with pytest.raises(ValueError, match="USE_TZ"), override_settings(USE_TZ=False):
            ours.adapt_datetimefield_value(value)
        return
    with override_settings(USE_TZ=zone is not None):
        assert ours.adapt_datetimefield_value(value) == djangos.adapt_datetimefield_value(value)


@pytest.mark.usefixtures("sqlite_only")
def test_the_connection_uses_these_operations_and_round_trips_a_datetime() -> None:
    assert isinstance(connection.ops, base.DatabaseOperations)
    moment = timezone.now().replace(microsecond=654321)
    call = Call.objects.create(call_id="call_moment", started_at=moment)
    assert Call.objects.get(pk=call.pk).started_at == moment
    assert Call.objects.filter(started_at__gte=moment).count() == 1
