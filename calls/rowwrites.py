"""Row writes for the webhook's batch transaction, with the SQL built once, not per row.

A webhook batch saves one ``Call`` per delivery with 15 to 30 changed columns, and inserts
one ``CallEvent`` per delivery. Through ``Model.save`` and ``bulk_create`` Django compiles
each statement anew: a queryset per row, a quoted name and several method calls per
column. Measured on the 2-core benchmark machine, that compiling was about half of the
batch transaction's CPU, more than the database's own work.

These functions make the same writes with the same values (each field's ``pre_save`` and
``get_db_prep_save``, as the ORM calls them, with calls/rowvalues.py's short cuts), but
keep the SQL text per model and column set, and send a batch's updates with one
``executemany`` per column set. Model signals are not sent: nothing listens to the models
written here (tests/test_rowwrites.py checks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, DatabaseError, NotSupportedError, connections
from django.db.models import Field, Model

from calls.rowcursor import cursor_for, in_pipeline
from calls.rowvalues import Savers, savers, values

M = TypeVar("M", bound=Model)

# psycopg's MAX_CACHED_STATEMENT_PARAMS: statements with more are converted on every run.
PSYCOPG_CACHED_PARAMETERS = 50


def row_new(model: type[M], **values: Any) -> M:
    """``model(**values)`` for a new row (``values`` by attname), a few times faster.

    Django's keyword constructor looks up every field's default for every row: 27 µs for a
    ``Call`` on the 2-core benchmark machine, where a webhook batch makes one per new call
    and an event per delivery. Here the defaults are found once per model, callable ones
    (``default=dict``) still called for each row as Django calls them, and the row is
    built positionally, Django's own fast path (``Model.from_db`` uses it).
    """
    row = []
    for attname, make, constant in _defaults(model):
        if attname in values:
            row.append(values.pop(attname))
        else:
            row.append(make() if make is not None else constant)
    if values:
        raise TypeError(f"{model.__name__} has no fields {sorted(values)}")
    return model(*row)


Default = tuple[str, Callable[[], Any] | None, Any]  # attname, callable default, constant


@cache
def _defaults(model: type[Model]) -> tuple[Default, ...]:
    defaults: list[Default] = []
    for field in model._meta.concrete_fields:
        if field.has_default() and callable(field.default):
            defaults.append((field.attname, field.default, None))
        else:
            defaults.append((field.attname, None, field.get_default()))
    return tuple(defaults)


def rows_update(
    changes: Iterable[tuple[Model, Sequence[str]]], *, using: str = DEFAULT_DB_ALIAS
) -> None:
    """``obj.save(update_fields=names)`` for each ``(obj, names)``, in one statement per set
    of names. Like ``save``, it fails if a row is missing (none is: the callers lock them)."""
    groups: defaultdict[tuple[type[Model], tuple[str, ...]], list[Model]] = defaultdict(list)
    for obj, names in changes:
        groups[type(obj), tuple(sorted(names))].append(obj)
    connection = connections[using]
    for (model, names), objs in groups.items():
        row_savers = _update_savers(model, names)
        params = [[*values(obj, row_savers, connection), obj.pk] for obj in objs]
        with cursor_for(connection) as cursor:
            sql = _update_sql(model, names, using)
            # One row, the usual case in a batch, by execute: psycopg's executemany sets up
            # a pipeline for the rows, twice the client CPU for one (2-core machine).
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)
            if not in_pipeline(connection) and cursor.rowcount != len(params):
                raise DatabaseError(
                    f"{model.__name__} update matched {cursor.rowcount} of {len(params)} rows"
                )


def rows_counted(
    model: type[Model],
    column: str,
    added: Mapping[Any, int],
    *,
    also: Mapping[str, Any],
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    """Add ``added[pk]`` to each row's ``column`` and set the columns of ``also``, as
    ``filter(pk=pk).update(column=F(column) + n, **also)`` would, with nothing read back:
    queued with the other row writes (rowcursor.batch_transaction)."""
    if not added:
        return
    connection = connections[using]
    names = tuple(also)
    prepared = [f.get_db_prep_save(also[f.name], connection) for f in _fields(model, names)]
    with cursor_for(connection) as cursor:
        cursor.executemany(
            _counted_sql(model, column, names, using),
            [[n, *prepared, pk] for pk, n in added.items()],
        )


@cache
def _counted_sql(model: type[Model], column: str, names: tuple[str, ...], using: str) -> str:
    quote = connections[using].ops.quote_name
    counted = quote(column_of(model, column))
    assignments = "".join(f", {quote(field.column)} = %s" for field in _fields(model, names))
    table, key = quote(model._meta.db_table), quote(column_of(model, "pk"))
    # Names come from the model's own metadata, never from input.
    return f"UPDATE {table} SET {counted} = {counted} + %s{assignments} WHERE {key} = %s"  # noqa: S608


def rows_insert(
    objs: Sequence[M],
    *,
    unless_exists: str | None = None,
    keyed: bool = False,
    using: str = DEFAULT_DB_ALIAS,
) -> list[M]:
    """``bulk_create(objs)`` for new rows of one model; returns the rows inserted, in order,
    with their primary keys set.

    With ``unless_exists`` (a unique column), a row whose value is already stored is
    skipped (ON CONFLICT DO NOTHING) and left out of the result, so one statement both
    inserts and tells what was there already. With ``keyed``, the rows' own primary keys
    are inserted (from ``rows_keys_reserved``) instead of the database's next ones, and
    nothing is read back: an insert that can be sent without waiting for its answer
    (rowcursor.batch_transaction), so it cannot skip rows and say which.
    """
    if keyed and unless_exists is not None:
        raise ValueError("a keyed insert reads nothing back: it cannot skip stored rows")
    if not objs:
        return []
    model = type(objs[0])
    row_savers = _insert_savers(model, keyed)
    connection = connections[using]
    rows = [values(obj, row_savers, connection, add=True) for obj in objs]
    returned = _inserted(
        connection, model, rows, unless_exists=unless_exists, keyed=keyed, using=using
    )
    if keyed:
        inserted, keys = list(objs), [obj.pk for obj in objs]
    elif unless_exists is None:
        inserted, keys = list(objs), [row[0] for row in returned]
    else:
        pk_by_value = {value: pk for pk, value in returned}
        inserted = [obj for obj in objs if getattr(obj, unless_exists) in pk_by_value]
        keys = [pk_by_value[getattr(obj, unless_exists)] for obj in inserted]
    for obj, key in zip(inserted, keys, strict=True):
        obj.pk = key
        obj._state.adding = False
        obj._state.db = using
    return inserted


_NEXT_KEYS_SQL = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"


def rows_keys_reserved(
    model: type[Model], count: int, *, using: str = DEFAULT_DB_ALIAS
) -> list[int]:
    """``count`` primary keys for new rows of ``model`` that nothing else will be given, for
    ``rows_insert(..., keyed=True)``: rows that other new rows refer to before they are
    inserted themselves (their foreign keys are checked at commit).

    PostgreSQL takes them from the key's sequence, for good: a rolled-back transaction
    leaves a gap, as its inserts would. SQLite has no sequence to take from; inside the
    write transaction (IMMEDIATE: nobody else inserts until it ends) the keys after the
    highest ever given are free, and inserting them moves that mark past them.
    """
    if count == 0:
        return []
    connection = connections[using]
    with cursor_for(connection) as cursor:
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(model._meta.db_table)
            cursor.execute(_NEXT_KEYS_SQL, [table, column_of(model, "pk"), count])
            return [row[0] for row in cursor.fetchall()]
        if connection.vendor == "sqlite" and connection.in_atomic_block:
            cursor.execute(_highest_key_sql(model, using), [model._meta.db_table])
            highest = cursor.fetchone()[0]
            return list(range(highest + 1, highest + 1 + count))
    raise NotSupportedError(f"no keys to reserve on {connection.vendor} outside a transaction")


@cache
def _highest_key_sql(model: type[Model], using: str) -> str:
    # AUTOINCREMENT keeps the highest key ever given in sqlite_sequence (no row before the
    # first insert); the table's own highest covers a table made without it.
    quote = connections[using].ops.quote_name
    table, key = quote(model._meta.db_table), quote(column_of(model, "pk"))
    return (
        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "  # noqa: S608
        f"COALESCE((SELECT MAX({key}) FROM {table}), 0))"
    )


def _inserted(
    connection: Any,
    model: type[Model],
    rows: list[list[Any]],
    *,
    unless_exists: str | None,
    keyed: bool,
    using: str,
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (their values, in ``_insert_fields`` order); what they returned.

    Multi-row statements, on PostgreSQL of at most 50 parameters each. psycopg converts a
    statement's ``%s`` placeholders once and keeps the result, but not for statements of
    more parameters: a batch's new calls (37 columns each) or events in one statement were
    converted anew each time, about 0.2 ms of CPU on the 2-core benchmark machine, more
    than sending a second statement.
    """
    per_statement = len(rows)
    if connection.vendor == "postgresql":
        per_statement = max(1, PSYCOPG_CACHED_PARAMETERS // len(_insert_fields(model, keyed)))
    returned: list[tuple[Any, ...]] = []
    with cursor_for(connection) as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            params = [value for row in chunk for value in row]
            cursor.execute(_insert_sql(model, len(chunk), unless_exists, keyed, using), params)
            if not keyed:
                returned += cursor.fetchall()
    return returned


@cache
def _fields(model: type[Model], names: tuple[str, ...]) -> tuple[Field[Any, Any], ...]:
    return tuple(field_of(model, name) for name in names)


@cache
def _update_savers(model: type[Model], names: tuple[str, ...]) -> Savers:
    return savers(_fields(model, names))


@cache
def _insert_savers(model: type[Model], keyed: bool) -> Savers:
    return savers(_insert_fields(model, keyed))


@cache
def _insert_fields(model: type[Model], keyed: bool) -> tuple[Field[Any, Any], ...]:
    fields = model._meta.concrete_fields
    return tuple(field for field in fields if keyed or not field.primary_key)


@cache
def _update_sql(model: type[Model], names: tuple[str, ...], using: str) -> str:
    quote = connections[using].ops.quote_name
    meta = model._meta
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in _fields(model, names))
    # Names come from the model's own metadata, never from input.
    table, key = quote(meta.db_table), quote(column_of(model, "pk"))
    return f"UPDATE {table} SET {assignments} WHERE {key} = %s"  # noqa: S608


@cache
def _insert_sql(
    model: type[Model], rows: int, unless_exists: str | None, keyed: bool, using: str
) -> str:
    quote = connections[using].ops.quote_name
    fields = _insert_fields(model, keyed)
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = ", ".join([row] * rows)
    table, pk = quote(model._meta.db_table), quote(column_of(model, "pk"))
    if keyed:
        ending = ""  # the keys are the rows' own: nothing to read back
    elif unless_exists is None:
        ending = f"RETURNING {pk}"
    else:
        unique = quote(column_of(model, unless_exists))
        ending = f"ON CONFLICT ({unique}) DO NOTHING RETURNING {pk}, {unique}"
    return f"INSERT INTO {table} ({columns}) VALUES {values} {ending}".rstrip()  # noqa: S608


def column_of(model: type[Model], name: str) -> str:
    return field_of(model, name).column


def field_of(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    return cast(Field[Any, Any], field)
