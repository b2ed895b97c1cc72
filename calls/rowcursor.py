"""The connection a webhook batch writes through: one cursor for the whole batch, and on
PostgreSQL its statements queued and sent together (calls/rowwrites.py's functions use
both)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from weakref import WeakKeyDictionary

from django.db import DEFAULT_DB_ALIAS, connections
from psycopg.pq import TransactionStatus

from calls.rowpipeline import DeferredStatements

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


@contextmanager
def batch_transaction(*, outermost: bool, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """The row writes of the block (inside Django's atomic block) share one cursor
    (``shared_cursor``). On PostgreSQL, for a transaction of its own (``outermost``: the
    atomic block opened just before this one and has sent nothing yet), that cursor queues
    them and sends them together (calls/rowpipeline.py): a statement whose rows are read
    waits for its answer, the rest go with the COMMIT.

    There the block sends BEGIN and COMMIT itself: the BEGIN goes with the first read
    rather than waiting on its own, as psycopg's cursors would have it wait, and Django's
    commit at the end of the atomic block finds the transaction closed and sends nothing.
    A webhook batch so waits twice: for its read, and for its COMMIT. Anything run
    meanwhile through Django (the outbox's rows, say) first sends what is queued, so
    statements still run in the order they were made.

    Errors of queued statements (a unique key taken meanwhile, say) surface where they are
    sent, and ``rowcount`` is not known before then, so ``rows_update`` does not check it.
    """
    connection = connections[using]
    psycopg_connection = connection.connection
    if not outermost or connection.vendor != "postgresql" or psycopg_connection is None:
        with shared_cursor(using):
            yield
        return
    statements = DeferredStatements(connection)
    outer = _shared_cursors.get(connection)  # a block around this one: back to it after
    _shared_cursors[connection] = statements
    try:
        statements.execute("BEGIN")
        with connection.execute_wrapper(_queue_sent_first(statements)):
            yield
        statements.execute("COMMIT")
        statements.flush()
    finally:
        if outer is None:
            del _shared_cursors[connection]
        else:
            _shared_cursors[connection] = outer
        if psycopg_connection.info.transaction_status in _OPEN:
            psycopg_connection.rollback()  # an error in the block: Django's rollback follows


def _queue_sent_first(statements: DeferredStatements) -> Any:
    """An execute wrapper: a statement run through Django goes after what is queued."""

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.flush()
        return execute(sql, params, many, context)

    return wrapper


_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


def in_pipeline(connection: Any) -> bool:
    """Whether the connection's row writes are queued (``batch_transaction``)."""
    return isinstance(_shared_cursors.get(connection), DeferredStatements)
