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
    """On PostgreSQL, for a transaction of its own (``outermost``: Django's atomic block
    opened just before this one and has sent nothing yet), queue the block's row writes and
    send them together (calls/rowpipeline.py): a statement whose rows are read waits for
    its answer, the rest go with the COMMIT. Elsewhere, nothing changes.

    BEGIN and COMMIT are the block's own, with psycopg's autocommit on meanwhile, so that
    psycopg adds neither, and the BEGIN goes with the first read rather than waiting on its
    own; Django's commit at the end of the atomic block then finds the transaction closed
    and sends nothing. A webhook batch so waits twice: for its read, and for its COMMIT.
    Anything else run meanwhile through Django (the outbox's rows, say) first sends what
    is queued, so statements still run in the order they were made.

    Errors of queued statements (a unique key taken meanwhile, say) surface where they are
    sent, and ``rowcount`` is not known before then, so ``rows_update`` does not check it.
    """
    connection = connections[using]
    psycopg_connection = connection.connection
    if not outermost or connection.vendor != "postgresql" or psycopg_connection is None:
        yield
        return
    statements = DeferredStatements(connection)
    shared = _shared_cursors.get(connection)
    psycopg_connection.autocommit = True  # idle: Django's atomic block has sent nothing yet
    _shared_cursors[connection] = statements
    try:
        statements.execute("BEGIN")
        with connection.execute_wrapper(_after(statements)):
            yield
        statements.execute("COMMIT")
        statements.flush()
    finally:
        if shared is None:
            del _shared_cursors[connection]
        else:
            _shared_cursors[connection] = shared
        _handed_back(psycopg_connection)


def _after(statements: DeferredStatements) -> Any:
    def queued_first(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.flush()
        return execute(sql, params, many, context)

    return queued_first


def _handed_back(psycopg_connection: Any) -> None:
    """The connection as Django's atomic block left it: autocommit off, no transaction."""
    if psycopg_connection.info.transaction_status in _OPEN:
        psycopg_connection.rollback()  # an error in the block: Django's rollback follows
    # A broken connection (status unknown) is left as it is: Django discards it.
    if psycopg_connection.info.transaction_status == TransactionStatus.IDLE:
        psycopg_connection.autocommit = False


_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


def in_pipeline(connection: Any) -> bool:
    """Whether the connection's row writes are queued (``batch_transaction``)."""
    return isinstance(_shared_cursors.get(connection), DeferredStatements)
