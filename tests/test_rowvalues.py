"""calls/rowvalues.py's short cuts give what the ORM's own preparation gives, value for value.

Run on each database the suite runs against (the CI's second pass is PostgreSQL), since the
backend's adapters (psycopg's integer wrappers, SQLite's datetime strings) are part of it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
from django.db import connection
from django.db.models import Field, Model
from django.utils import timezone as django_timezone
from django.utils.translation import gettext_lazy

from calls.models import Call, CallEvent
from calls.rowvalues import savers, values

MOMENT = datetime(2026, 11, 27, 12, 30, 5, 123456, tzinfo=UTC)

SAMPLES: list[Any] = [
    None,
    "",
    "text",
    "Grüße \u2603",
    "12",
    0,
    7,
    -3,
    2**40,
    True,
    False,
    1.5,
    0.0,
    Decimal("12.3400"),
    MOMENT,
    MOMENT.astimezone(timezone(timedelta(hours=-5))),
    gettext_lazy("lazy text"),
    [1, "two"],
    {"key": "value"},
    "127.0.0.1",
    "::ffff:10.0.0.1",
    "2001:DB8::1",
]

FIELDS = [
    pytest.param(model, field, id=f"{model.__name__}.{field.name}")
    for model in (Call, CallEvent)
    for field in model._meta.concrete_fields
    if not field.primary_key
]


def _outcome(prepare: Any, obj: Model) -> tuple[Any, ...]:
    try:
        value = prepare(obj)
    except Exception as error:  # the same refusal, whichever path refuses
        return ("refused", type(error))
    # Wrappers that do not compare by value (psycopg's Jsonb) compare by what they wrap.
    return ("sent", type(value), getattr(value, "obj", value))


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "field"), FIELDS)
@pytest.mark.parametrize("add", [False, True])
def test_each_field_prepares_every_sample_as_the_orm_does(
    model: type[Model], field: Field[Any, Any], add: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(django_timezone, "now", lambda: MOMENT)  # auto_now stamps alike
    connection.ensure_connection()
    for sample in SAMPLES:
        obj = model()
        setattr(obj, field.attname, sample)
        orm = _outcome(lambda o: field.get_db_prep_save(field.pre_save(o, add), connection), obj)
        setattr(obj, field.attname, sample)  # pre_save may have stamped it
        ours = _outcome(lambda o: values(o, savers((field,)), connection, add=add)[0], obj)
        assert ours == orm, f"{field.name} = {sample!r}"
        setattr(obj, field.attname, sample)  # again: what a short cut remembered
        again = _outcome(lambda o: values(o, savers((field,)), connection, add=add)[0], obj)
        assert again == orm, f"{field.name} = {sample!r}, second time"


@pytest.mark.django_db
def test_short_cuts_are_taken_for_the_common_columns() -> None:
    # The point of the module: the webhook's plain values skip the ORM's chain. If Django
    # renamed a class this list would silently go back to the slow path.
    from calls.rowvalues import _prep

    common = ("agent_id", "transcript", "recording_url", "call_successful", "duration_ms")
    for model, name in [
        *((Call, name) for name in (*common, "e2e_latency_p50_ms", "started_at")),
        *((Call, name) for name in ("call_object_event", "transcript_event")),
        (CallEvent, "call"),
        (CallEvent, "source_ip"),
    ]:
        field = cast(Field[Any, Any], model._meta.get_field(name))
        assert _prep(field) != field.get_db_prep_save, name
