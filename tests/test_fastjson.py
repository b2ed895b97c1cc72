"""retellhub/fastjson.py and the JSON model field: same documents as the standard library."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from calls.models import Call
from retellhub import fastjson

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_round_trip_matches_the_standard_library(value: object) -> None:
    encoded = fastjson.dumps(value)
    assert json.loads(encoded) == value
    assert fastjson.loads(encoded) == value
    assert fastjson.loads(json.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "number", [2**64, 2**70 + 1, -(2**63) - 1, -(10**30) - 7, 12345678901234567890123]
)
@pytest.mark.parametrize("template", ['{{"n": {}}}', "[1,{}]", " {}"])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_integers_beyond_64_bits_stay_exact(number: int, template: str, as_bytes: bool) -> None:
    # orjson would read them as floats; repr() tells 18446744073709551616 from 1.8e+19.
    document = template.format(number)
    data = document.encode() if as_bytes else document
    assert repr(fastjson.loads(data)) == repr(json.loads(document))
    assert str(number) in repr(fastjson.loads(data))


def test_what_orjson_refuses_still_parses_as_before() -> None:
    assert fastjson.loads(b'{"lone": "\\ud800"}') == {"lone": "\ud800"}
    assert fastjson.loads("[NaN]")[0] != fastjson.loads("[NaN]")[0]  # NaN, as json.loads gives


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe{}", b"\xef\xbb\xbf{}", "{'a': 1}"])
def test_invalid_documents_raise_value_error(body: bytes | str) -> None:
    # UnicodeDecodeError and json.JSONDecodeError are both ValueErrors: callers catch one.
    with pytest.raises(ValueError):  # noqa: PT011
        fastjson.loads(body)


def test_values_orjson_cannot_encode_fall_back_to_django_rules() -> None:
    moment = datetime(2026, 11, 26, 12, 30, 1, 123456, tzinfo=UTC)
    document = {
        "at": moment,
        "price": Decimal("0.125"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "big": 2**70,
        1: "non-string key",
    }
    decoded = json.loads(fastjson.dumps(document))
    assert decoded == {
        "at": "2026-11-26T12:30:01.123Z",  # DjangoJSONEncoder's form, as stored before
        "price": "0.125",
        "id": "12345678-1234-5678-1234-567812345678",
        "big": 2**70,
        "1": "non-string key",
    }


def test_non_ascii_is_written_as_utf8() -> None:
    assert fastjson.dumps_str({"name": "Zoë 😀"}) == '{"name":"Zoë 😀"}'


@pytest.mark.django_db
def test_json_columns_round_trip_and_stay_queryable() -> None:
    call = Call.objects.create(
        call_id="call_fastjson",
        metadata={"crm": {"id": 7, "tags": ["vip", "Zoë"]}, "big": 2**70},
        transcript_object=[{"role": "agent", "content": "Hi", "words": []}],
    )
    call.refresh_from_db()
    assert call.metadata == {"crm": {"id": 7, "tags": ["vip", "Zoë"]}, "big": 2**70}
    assert call.transcript_object == [{"role": "agent", "content": "Hi", "words": []}]
    # Lookups into the JSON still go through the database's own JSON functions.
    assert Call.objects.filter(metadata__crm__id=7).count() == 1
    assert Call.objects.filter(metadata__crm__tags__1="Zoë").count() == 1
    assert list(Call.objects.filter(pk=call.pk).values_list("metadata__crm__id", flat=True)) == [7]
    assert Call.objects.filter(metadata__has_key="big").count() == 1


@pytest.mark.django_db
def test_sql_null_and_json_scalars_read_back() -> None:
    call = Call.objects.create(
        call_id="call_nulls", metadata=None, latency={"e2e": None}, custom_analysis_data="text"
    )
    call.refresh_from_db()
    assert call.metadata is None
    assert call.latency == {"e2e": None}
    assert call.custom_analysis_data == "text"
    assert Call.objects.filter(metadata__isnull=True).count() == 1


@pytest.mark.django_db
def test_bulk_inserts_of_json_rows_do_not_use_unnest_arrays(postgres_only: None) -> None:
    # UNNEST would send every column as one array that psycopg escapes element by element.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        Call.objects.bulk_create([Call(call_id=f"call_bulk_{n}", metadata={}) for n in range(3)])
    [insert] = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert "UNNEST" not in insert
    assert Call.objects.count() == 3
