"""Row writes for the webhook's batch transaction, with the SQL built once, not per row.

A webhook batch saves one ``Call`` per delivery with 15 to 30 changed columns, and inserts
one ``CallEvent`` per delivery. Through ``Model.save`` and ``bulk_create`` Django compiles
each statement anew: a queryset per row, a quoted name and several method calls per
column. Measured on the 2-core benchmark machine, that compiling was about half of the
batch transaction's CPU, more than the database's own work.

These functions make the same writes with the same values (each field's ``pre_save`` and
``get_db_prep_save``, as the ORM calls them), but keep the SQL text per model and column
set, and send a batch's updates with one ``executemany`` per column set. Model signals are
not sent: nothing listens to the models written here (tests/test_rowwrites.py checks).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.models import Field, Model


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
        fields = _fields(model, names)
        params = [[*_save_values(obj, fields, connection), obj.pk] for obj in objs]
        with connection.cursor() as cursor:
            cursor.executemany(_update_sql(model, names, using), params)
            if cursor.rowcount != len(params):
                raise DatabaseError(
                    f"{model.__name__} update matched {cursor.rowcount} of {len(params)} rows"
                )


def rows_insert(objs: Sequence[Model], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """``bulk_create(objs)`` for new rows of one model: sets each object's primary key."""
    if not objs:
        return
    model = type(objs[0])
    fields = _insert_fields(model)
    connection = connections[using]
    params = [value for obj in objs for value in _save_values(obj, fields, connection, add=True)]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, len(objs), using), params)
        keys = [row[0] for row in cursor.fetchall()]
    for obj, key in zip(objs, keys, strict=True):
        obj.pk = key
        obj._state.adding = False
        obj._state.db = using


def _save_values(
    obj: Model, fields: Sequence[Field[Any, Any]], connection: Any, *, add: bool = False
) -> list[Any]:
    return [field.get_db_prep_save(field.pre_save(obj, add), connection) for field in fields]


@cache
def _fields(model: type[Model], names: tuple[str, ...]) -> tuple[Field[Any, Any], ...]:
    return tuple(model._meta.get_field(name) for name in names)  # type: ignore[misc]


@cache
def _insert_fields(model: type[Model]) -> tuple[Field[Any, Any], ...]:
    return tuple(field for field in model._meta.concrete_fields if not field.primary_key)


@cache
def _update_sql(model: type[Model], names: tuple[str, ...], using: str) -> str:
    quote = connections[using].ops.quote_name
    meta = model._meta
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in _fields(model, names))
    # Names come from the model's own metadata, never from input.
    table, key = quote(meta.db_table), quote(meta.pk.column)
    return f"UPDATE {table} SET {assignments} WHERE {key} = %s"  # noqa: S608


@cache
def _insert_sql(model: type[Model], rows: int, using: str) -> str:
    quote = connections[using].ops.quote_name
    meta = model._meta
    fields = _insert_fields(model)
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = ", ".join([row] * rows)
    table, key = quote(meta.db_table), quote(meta.pk.column)
    return f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {key}"  # noqa: S608
