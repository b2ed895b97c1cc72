"""Streaming CSV responses, used by the API export and the admin's CSV action."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse

# CSV rows per yielded chunk: large enough to keep the per-chunk overhead small.
ROWS_PER_CHUNK = 500
# Cells a spreadsheet would run as a formula get a leading quote; phone numbers and
# negative numbers, which also start with + or -, are left alone.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[\d\s().-]+")


class _Echo:
    """A file-like whose write() hands back the line, so csv.writer produces strings."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: Any) -> Any:
    """ISO 8601 times; text such as a caller-influenced summary kept from running as a
    spreadsheet formula."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        if not PLAIN_NUMBER.fullmatch(value):
            return "'" + value
    return value


def csv_chunks(*, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(header)
    batch: list[str] = []
    for row in rows:
        batch.append(writer.writerow([csv_cell(value) for value in row]))
        if len(batch) >= ROWS_PER_CHUNK:
            yield "".join(batch)
            batch.clear()
    if batch:
        yield "".join(batch)


def _next_chunk(chunks: Iterator[str]) -> str | None:
    return next(chunks, None)


async def _from_thread(chunks: Iterator[str]) -> AsyncIterator[str]:
    # Each chunk is produced in the request's own sync thread (thread-sensitive), so the
    # database cursor behind ``chunks`` stays on the connection that opened it.
    pull = sync_to_async(_next_chunk)
    while (chunk := await pull(chunks)) is not None:
        yield chunk


def csv_response(
    *, request: HttpRequest, filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> StreamingHttpResponse:
    """A streamed CSV download. Under ASGI, Django would materialise a *sync* iterator into a
    list before sending it, i.e. hold the whole export in memory, so there it gets an async
    one; under WSGI and the test client, the plain generator."""
    chunks = csv_chunks(header=header, rows=rows)
    content = _from_thread(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
