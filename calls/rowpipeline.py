"""A webhook batch's statements on PostgreSQL, queued and sent to the server together.

Within a batch (rowcursor.batch_transaction) the row writes (calls/rowwrites.py) and the
batch's read (calls/batchread.py) go through ``DeferredStatements`` instead of a psycopg
cursor: each statement is converted when it is made, but only queued; a statement whose
rows are read sends everything queued before it, itself and nothing after; the COMMIT
sends the rest. Each sending is one write to the socket, through libpq's pipeline mode,
and one wait for all the answers.

psycopg's own pipeline mode sends the same statements, but writes each to the socket
as it comes (waking the server once per statement) and runs a good deal of Python per
statement to track its results. Measured on the 2-core benchmark machine, a transaction
of six updates and its COMMIT cost psycopg 222 µs of CPU that way, 77 µs this way; the
server's share was the same.

Statements are prepared as psycopg's cursors prepare them, through the connection's own
record of its prepared statements: after ``prepare_threshold`` runs, at most
``prepared_max`` at once, none where the connection prepares nothing
(``DATABASE_PREPARED_STATEMENTS`` off, behind PgBouncer). psycopg deallocates them all
after a ROLLBACK and forgets them, and these forget them with it.

The pieces of psycopg used here (``PostgresQuery``, which converts a statement as its
cursors do, and the connection's ``PrepareManager``) are internal to psycopg, though
unchanged through its 3.x releases: requirements.txt pins psycopg, and
tests/test_rowpipeline.py exercises each of them against PostgreSQL.
"""

from __future__ import annotations

import select
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import errors
from psycopg._encodings import conn_encoding
from psycopg._preparing import Key, Prepare
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer
from psycopg.pq import ExecStatus


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    query: PostgresQuery  # converted: the query as sent, its parameters dumped


@dataclass(frozen=True, slots=True)
class _Sent:
    """A statement sent, and what its answer tells the connection's prepared statements."""

    prepare: Prepare
    name: bytes
    key: Key | None  # as PrepareManager.maybe_add_to_cache returned it


class DeferredStatements:
    """The subset of a DB-API cursor that the row writes use, sending statements only when
    answers are needed (``fetchall``, ``flush``)."""

    def __init__(self, connection: Any) -> None:
        self._django = connection
        self._connection = connection.connection  # psycopg's
        self._pgconn = self._connection.pgconn
        self._transformer = Transformer(self._connection)
        self._prepared = self._connection._prepared  # psycopg's PrepareManager
        self._queue: list[_Statement] = []
        self._last: Any = None  # the answer of the last statement sent
        self.rowcount = -1

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        query = PostgresQuery(self._transformer)
        query.convert(sql, params)
        self._queue.append(_Statement(sql, query))
        self._log(sql)
        self.rowcount = -1

    def executemany(self, sql: str, params_seq: Iterable[Sequence[Any]]) -> None:
        for params in params_seq:
            self.execute(sql, params)

    def fetchall(self) -> list[tuple[Any, ...]]:
        self.flush()
        result = self._last
        if result is None or result.status != ExecStatus.TUPLES_OK:
            raise errors.ProgrammingError("the last statement returned no rows")
        self._transformer.set_pgresult(result)
        return self._transformer.load_rows(0, result.ntuples, tuple)

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchall()
        return rows[0] if rows else None

    def queued(self) -> list[str]:
        """The statements not sent yet, as made (``%s`` placeholders)."""
        return [statement.sql for statement in self._queue]

    def flush(self) -> None:
        """Send what is queued and wait for every answer; raise the first error, as
        Django's cursor would (an ``IntegrityError`` for a unique key taken, say)."""
        queue, self._queue = self._queue, []
        if not queue:
            return
        with self._django.wrap_database_errors:
            self._pgconn.enter_pipeline_mode()
            try:
                sent = [self._send(statement.query) for statement in queue]
                self._pgconn.pipeline_sync()
                self._send_all()
                answers = self._answers()
            finally:
                self._pgconn.exit_pipeline_mode()
            self._validated(sent, answers)
            if self._prepared._to_flush:  # deallocations psycopg asks for (past its limit)
                self._connection.wait(self._prepared.maintain_gen(self._connection))
        self._last = answers[-1]
        self.rowcount = _rows(self._last)

    def _send(self, query: PostgresQuery) -> _Sent:
        """Send ``query``, prepared first if psycopg's cursor would prepare it now."""
        prepare, name = self._prepared.get(query)
        if prepare is Prepare.NO:
            self._pgconn.send_query_params(
                query.query, query.params, param_types=query.types, param_formats=query.formats
            )
        else:
            if prepare is Prepare.SHOULD:
                self._pgconn.send_prepare(name, query.query, param_types=query.types)
            self._pgconn.send_query_prepared(name, query.params, param_formats=query.formats)
        return _Sent(prepare, name, self._prepared.maybe_add_to_cache(query, prepare, name))

    def _send_all(self) -> None:
        # Non-blocking: libpq sends what the socket takes. While waiting to send more,
        # read too, so that neither side waits on the other's full buffer.
        while self._pgconn.flush():
            readable, _ = _wait(self._pgconn.socket, write=True)
            if readable:
                self._pgconn.consume_input()

    def _answers(self) -> list[Any]:
        """Per command sent (a preparation is one), its last result, up to the pipeline's
        sync."""
        answers: list[Any] = []
        current = None
        while True:
            while self._pgconn.is_busy():
                _wait(self._pgconn.socket, write=False)
                self._pgconn.consume_input()
            result = self._pgconn.get_result()
            if result is None:  # the end of one command's results
                answers.append(current)
                current = None
            elif result.status == ExecStatus.PIPELINE_SYNC:
                return answers
            else:
                current = result

    def _validated(self, sent: list[_Sent], answers: list[Any]) -> None:
        """Tell psycopg's record how each statement went; raise for the first that failed,
        as psycopg would (the server skipped the rest)."""
        answer = iter(answers)
        first = None
        for command in sent:
            # A preparation's answer first: if it failed, the statement was skipped.
            results = [next(answer) for _ in range(2 if command.prepare is Prepare.SHOULD else 1)]
            if command.key is not None:
                self._prepared.validate(command.key, command.prepare, command.name, results[-1:])
            first = first or next((result for result in results if _failed(result)), None)
        if first is None:
            return
        if first.status == ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(first, encoding=conn_encoding(self._connection))
        raise errors.PipelineAborted("pipeline aborted")

    def _log(self, sql: str) -> None:
        if self._django.queries_logged:  # as Django's debug cursor records a statement
            self._django.queries_log.append({"sql": sql, "time": "0.000"})


def _failed(result: Any) -> bool:
    return result is not None and result.status in (
        ExecStatus.FATAL_ERROR,
        ExecStatus.PIPELINE_ABORTED,
    )


def _rows(result: Any) -> int:
    return int(result.command_tuples or 0) if result is not None else -1


def _wait(fd: int, *, write: bool) -> tuple[bool, bool]:
    """Block until ``fd`` is readable (or writable, with ``write``)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | (select.POLLOUT if write else 0))
    events = 0
    for _, mask in poller.poll():
        events |= mask
    return bool(events & (select.POLLIN | select.POLLERR | select.POLLHUP)), bool(
        events & select.POLLOUT
    )
