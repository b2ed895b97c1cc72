"""Row reads for the webhook's batch transaction: a locked read that builds its rows
itself (calls/rowwrites.py does the writes), and what turns a column's value from the
database into the field's, as a queryset would."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from calls.rowcursor import cursor_for
from calls.rowwrites import column_of, field_of

M = TypeVar("M", bound=Model)


def rows_locked(
    model: type[M],
    *,
    key: str,
    values: Collection[Any],
    columns: Sequence[str],
    using: str = DEFAULT_DB_ALIAS,
) -> list[M]:
    """The rows whose ``key`` is one of ``values``, loading only ``columns`` (the rest are
    deferred), in ``key`` order. Where the database has row locks (PostgreSQL) they are
    locked FOR UPDATE until the transaction ends; SQLite's write transaction locks it all.
    """
    if not values:
        return []
    names = locked_names(model, key, tuple(columns))
    converters = column_converters(model, names, using)
    connection = connections[using]
    with cursor_for(connection) as cursor, planned_each_time(connection):
        cursor.execute(locked_sql(model, key, names, len(values), using), sorted(values))
        rows = cursor.fetchall()
    return [model.from_db(using, names, converted(row, converters, connection)) for row in rows]


@contextmanager
def planned_each_time(connection: Any) -> Iterator[None]:
    """On PostgreSQL, statements sent meanwhile are not prepared: the server plans each for
    its own parameters and the table as it is now.

    A prepared statement is planned once for any parameters (a generic plan) and keeps that
    plan until the table's statistics change. The webhook's locked read was prepared within
    seconds of a deployment's first deliveries, while the calls table was nearly empty, so
    its plan scanned the whole table, and kept doing so as it grew until autovacuum first
    analysed it. Writing 3,000 deliveries into a fresh database on the 2-core benchmark
    machine, those scans were about 40% of PostgreSQL's CPU; planning once per batch costs
    far less. Where the connection's planner never picks a sequential scan over an index
    (``DATABASE_INDEX_SCANS_ONLY``: the webhook writer processes), a kept plan uses the
    index whatever the statistics say, and the read is prepared like any other.
    """
    psycopg_connection = connection.connection
    if connection.vendor != "postgresql" or psycopg_connection is None:
        yield
        return
    if settings.DATABASE_INDEX_SCANS_ONLY:  # any plan it keeps uses the index
        yield
        return
    threshold = psycopg_connection.prepare_threshold
    psycopg_connection.prepare_threshold = None  # psycopg: prepare nothing
    try:
        yield
    finally:
        psycopg_connection.prepare_threshold = threshold


# A locked read builds its rows itself rather than through ``Model.objects.raw``: RawQuerySet
# works out the columns, their fields and their converters again on every query, which took
# more of the webhook's CPU than reading the rows. Converters are called as a queryset calls
# them: (value, expression, connection), the connection being the caller's own.
Converter = Callable[[Any, Any, Any], Any]
ColumnConverters = tuple[Any, tuple[Converter, ...]]  # (column expression, converters)


def converted(
    row: Sequence[Any], columns: Sequence[ColumnConverters], connection: Any
) -> list[Any]:
    values = list(row)
    for index, (column, steps) in enumerate(columns):
        for step in steps:
            values[index] = step(values[index], column, connection)
    return values


@cache
def column_converters(
    model: type[Model], names: tuple[str, ...], using: str
) -> tuple[ColumnConverters, ...]:
    """Per column, what turns the database's value into the field's (the backend's
    converters, then the field's ``from_db_value``), as a queryset applies them."""
    ops = connections[using].ops  # its converters read only configuration, alike per thread
    columns = []
    for name in names:
        field = field_of(model, name)
        column = field.get_col(model._meta.db_table)
        steps = (*ops.get_db_converters(column), *column.get_db_converters(connections[using]))
        columns.append((column, steps))
    return tuple(columns)


@cache
def locked_names(model: type[Model], key: str, columns: tuple[str, ...]) -> tuple[str, ...]:
    """The attribute names a locked read loads (the primary key, ``key``, ``columns``) in
    the model's field order, which ``Model.from_db`` expects."""
    loaded = {field_of(model, name).attname for name in ("pk", key, *columns)}
    return tuple(f.attname for f in model._meta.concrete_fields if f.attname in loaded)


@cache
def locked_sql(model: type[Model], key: str, names: tuple[str, ...], count: int, using: str) -> str:
    """The locked read of ``count`` keys: ``names`` (``locked_names``) in that order."""
    connection = connections[using]
    quote = connection.ops.quote_name
    meta = model._meta
    selected = ", ".join(quote(column_of(model, name)) for name in names)
    key_column = quote(column_of(model, key))
    placeholders = ", ".join(["%s"] * count)
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (
        f"SELECT {selected} FROM {quote(meta.db_table)} "  # noqa: S608
        f"WHERE {key_column} IN ({placeholders}) ORDER BY {key_column}{lock}"
    )
