"""The connection a webhook batch writes through: one cursor for the whole batch, and on
PostgreSQL the writes after the merge sent with the COMMIT (calls/rowwrites.py's
functions use both)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connections

# The cursor a block of row writes shares (``shared_cursor``), per connection object; a
# connection belongs to one thread, so each thread sees only its own.
_shared_cursors: WeakKeyDictionary[Any, Any] = WeakKeyDictionary()


@contextmanager
def shared_cursor(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Row writes inside the block (and the caller's own, through ``cursor_for``) share one
    cursor, closed when the block ends.

    Opening a cursor is not free: Django wraps it and psycopg sets up its adapters, about
    30 µs of CPU each time on the 2-core benchmark machine, near the cost of a round trip
    to the database. A webhook batch used to open five or six.
    """
    connection = connections[using]
    if connection in _shared_cursors:  # nested: the outer block's cursor serves
        yield
        return
    with connection.cursor() as cursor:
        _shared_cursors[connection] = cursor
        try:
            yield
        finally:
            del _shared_cursors[connection]


@contextmanager
def cursor_for(connection: Any) -> Iterator[Any]:
    shared = _shared_cursors.get(connection)
    if shared is not None:
        yield shared
    else:
        with connection.cursor() as cursor:
            yield cursor


def pipelined(connection: Any, stack: ExitStack) -> None:
    """On PostgreSQL, send the connection's statements from now on without waiting for each
    one's answer, until ``stack`` closes (after the transaction's COMMIT, which then goes
    with them): psycopg's pipeline mode. Elsewhere, nothing changes.

    A round trip costs both sides CPU of its own (system calls, waking the other
    process): on the 2-core benchmark machine, a transaction of nine small statements
    cost psycopg 495 µs and PostgreSQL 430 µs one by one, 420 and 310 µs in two pipelines.
    A statement whose results are read (``fetchall``) still waits for them. Errors of the
    others (a unique key taken meanwhile, say) surface at the COMMIT, and ``rowcount`` is
    not known before it, so ``rows_update`` does not check it there.
    """
    psycopg_connection = connection.connection
    if connection.vendor == "postgresql" and psycopg_connection is not None:
        stack.enter_context(psycopg_connection.pipeline())


def commit_pipelined(stack: ExitStack, using: str = DEFAULT_DB_ALIAS) -> None:
    """End the transaction inside the pipeline ``pipelined`` opened on ``stack``, if it
    did, and close it: the COMMIT goes with the writes, and all their answers come back in
    one round trip. Django's own commit, when the atomic block ends, then finds the
    transaction closed and sends nothing. Elsewhere this only closes ``stack``.

    Left to Django, the COMMIT went into the pipeline too, but psycopg then waited on the
    pipeline three times: for the COMMIT, for switching autocommit back on (in a pipeline
    it cannot know the transaction status without the answers), and when the pipeline
    closed. Two of a batch's seven round trips carried nothing.

    If a write fails, the COMMIT is refused with it: closing the pipeline raises inside
    the atomic block, which rolls back as for any error.
    """
    connection = connections[using]
    if in_pipeline(connection):
        with cursor_for(connection) as cursor:
            cursor.execute("COMMIT")
    with connection.wrap_database_errors:  # psycopg's errors as Django's, as from a cursor
        stack.close()


def in_pipeline(connection: Any) -> bool:
    psycopg_connection = connection.connection
    if connection.vendor != "postgresql" or psycopg_connection is None:
        return False
    return bool(psycopg_connection.pgconn.pipeline_status)
