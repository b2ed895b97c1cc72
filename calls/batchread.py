"""What a webhook batch reads before it merges: its stored calls, locked; keys for its new
calls and new events; which of its bodies are stored already.

On PostgreSQL that is one statement, sent in the pipeline with the transaction's BEGIN,
so a batch waits on the database twice in all: for this read, and for its writes sent
with the COMMIT (services.call_events_record). Read step by step, as before, it was four
waits: the BEGIN, the locked read, the keys, and an insert of the events that skipped
stored bodies and said which it had inserted. A round trip costs both sides CPU of their
own: on the 2-core benchmark machine, 45 µs in psycopg and 35 µs in PostgreSQL for a
one-row SELECT, about as much as the statement itself.

Elsewhere (SQLite) the same four things are read one after the other, inside the write
transaction that already holds the database.

Keys are reserved as ``rows_keys_reserved`` reserves them; a body this batch finds
unstored may still be stored by another transaction before this one commits (a
retry of a delivery racing the original), and the batch's insert then fails on its
unique digest: ``call_events_record`` writes the batch again, and it finds the body.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from calls.models import Call, CallEvent
from calls.rowcursor import cursor_for
from calls.rowreads import (
    column_converters,
    converted,
    locked_names,
    locked_sql,
    planned_each_time,
    rows_locked,
)
from calls.rowwrites import column_of, rows_keys_reserved

# What the merge reads of a locked call; it writes only what changed. The rest (the
# transcript twice over is tens of KB of JSON to decode) is not read; code that does use a
# column loads it on first access.
CALL_MERGE_COLUMNS = ("call_id", "field_versions", "last_event_at")


@dataclass(slots=True)
class BatchRead:
    calls: list[Call]  # the stored ones, locked until the transaction ends
    new_call_keys: list[int]  # one per call id not stored
    stored_events: dict[str, int]  # event key by body digest, for bodies stored before
    new_event_keys: list[int]  # one per digest not stored


def batch_read(
    call_ids: Collection[str], digests: Collection[str], *, using: str = DEFAULT_DB_ALIAS
) -> BatchRead:
    """The batch's stored calls (locked, in ``call_id`` order, so two transactions never
    wait on each other in a cycle), reserved keys for the rest, and the same for its
    bodies (by SHA-256 digest)."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        return _read_at_once(sorted(call_ids), sorted(digests), connection, using)
    calls = rows_locked(Call, key="call_id", values=call_ids, columns=CALL_MERGE_COLUMNS)
    stored = _stored_events(digests, connection, using)
    return BatchRead(
        calls=calls,
        new_call_keys=rows_keys_reserved(Call, len(call_ids) - len(calls), using=using),
        stored_events=stored,
        new_event_keys=rows_keys_reserved(CallEvent, len(digests) - len(stored), using=using),
    )


# The kinds of row the single PostgreSQL statement returns, in its first column.
_CALL, _NEW_CALL_KEY, _EVENT, _NEW_EVENT_KEY = 1, 2, 3, 4


def _read_at_once(
    call_ids: list[str], digests: list[str], connection: Any, using: str
) -> BatchRead:
    names = locked_names(Call, "call_id", CALL_MERGE_COLUMNS)
    converters = column_converters(Call, names, using)
    sql = _read_sql(len(call_ids), len(digests), using)
    with cursor_for(connection) as cursor, planned_each_time(connection):
        cursor.execute(sql, [*call_ids, *digests, len(call_ids), len(digests)])
        rows = cursor.fetchall()
    read = BatchRead(calls=[], new_call_keys=[], stored_events={}, new_event_keys=[])
    for kind, *columns in rows:
        if kind == _CALL:
            values = converted(columns[: len(names)], converters, connection)
            read.calls.append(Call.from_db(using, names, values))
        elif kind == _NEW_CALL_KEY:
            read.new_call_keys.append(columns[0])
        elif kind == _EVENT:
            read.stored_events[columns[1]] = columns[0]
        else:
            read.new_event_keys.append(columns[0])
    return read


@cache
def _read_sql(calls: int, digests: int, using: str) -> str:
    """The locked read and the stored bodies (each run once: MATERIALIZED), then a key from
    each table's sequence for every call and body they did not find."""
    names = locked_names(Call, "call_id", CALL_MERGE_COLUMNS)
    locked = locked_sql(Call, "call_id", names, calls, using)
    quote = connections[using].ops.quote_name
    selected = ", ".join(quote(column_of(Call, name)) for name in names)
    nulls = ", ".join(["NULL"] * (len(names) - 1))
    # Names come from the models' own metadata, never from input. A stored event's row is
    # (key, digest), padded with nulls to the locked read's width.
    return (
        f"WITH locked AS MATERIALIZED ({locked}), "  # noqa: S608
        f"stored AS MATERIALIZED ({_stored_sql(digests, using)}) "
        f"SELECT {_CALL}, {selected} FROM locked "
        f"UNION ALL SELECT {_NEW_CALL_KEY}, {_next_key(Call, using)}, {nulls} "
        "FROM generate_series(1, %s - (SELECT count(*) FROM locked)) "
        f"UNION ALL SELECT {_EVENT}, *, {nulls.removeprefix('NULL, ')} FROM stored "
        f"UNION ALL SELECT {_NEW_EVENT_KEY}, {_next_key(CallEvent, using)}, {nulls} "
        "FROM generate_series(1, %s - (SELECT count(*) FROM stored))"
    )


def _next_key(model: type[Model], using: str) -> str:
    quote = connections[using].ops.quote_name
    table, key = quote(model._meta.db_table), column_of(model, "pk")
    return f"nextval(pg_get_serial_sequence('{table}', '{key}'))"


def _stored_events(digests: Collection[str], connection: Any, using: str) -> dict[str, int]:
    if not digests:
        return {}
    with cursor_for(connection) as cursor:
        cursor.execute(_stored_sql(len(digests), using), list(digests))
        return {digest: key for key, digest in cursor.fetchall()}


@cache
def _stored_sql(count: int, using: str) -> str:
    """The keys and digests of the stored events among ``count`` digests."""
    quote = connections[using].ops.quote_name
    table, key = quote(CallEvent._meta.db_table), quote(column_of(CallEvent, "pk"))
    digest = quote(column_of(CallEvent, "body_sha256"))
    placeholders = ", ".join(["%s"] * count)
    return f"SELECT {key}, {digest} FROM {table} WHERE {digest} IN ({placeholders})"  # noqa: S608
