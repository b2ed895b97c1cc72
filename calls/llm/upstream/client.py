"""The upstream client's one job: POST a JSON body, yield the server-sent events back."""

from __future__ import annotations

import ssl
from collections.abc import AsyncGenerator, Mapping

from calls.llm.upstream.connection import Connection
from calls.llm.upstream.errors import ConnectionDropped, UpstreamStatusError
from calls.llm.upstream.origin import Origin, split_url
from calls.llm.upstream.pool import Pool, pool_for_loop


def request_bytes(origin: Origin, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {origin.host_header}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Accept: text/event-stream",
        "Accept-Encoding: identity",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def post_events(
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes,
    tls: ssl.SSLContext | None = None,
    last_event: bytes | None = None,
) -> AsyncGenerator[bytes, None]:
    """POST ``body`` to ``url`` and yield the data of each server-sent event, up to the
    response's end or an event starting with ``last_event`` (not yielded).

    Closing the generator early (or cancelling its consumer) closes the connection.
    """
    origin, path = split_url(url)
    pool = pool_for_loop(tls)
    request = request_bytes(origin, path, headers, body)
    connection = await _send_with_one_retry(pool, origin, request)
    try:
        status = await connection.wait_head()
        if not 200 <= status < 300:
            await connection.read_error_body()
            raise UpstreamStatusError(status)
        while (event := await connection.next_event()) is not None:
            if last_event is not None and event.startswith(last_event):
                connection.finished = True
                return
            yield event
    finally:
        # An abandoned response (cancelled answer, error) is not reusable: release closes it.
        pool.release(origin, connection)


async def _send_with_one_retry(pool: Pool, origin: Origin, request: bytes) -> Connection:
    connection = await pool.acquire(origin)
    connection.send(request)
    if not connection.reused:
        return connection
    try:
        await connection.wait_head()
    except ConnectionDropped:
        # The server closed the idle connection as we reused it; nothing was processed.
        connection = await pool.acquire(origin, fresh=True)
        connection.send(request)
    except BaseException:
        pool.release(origin, connection)
        raise
    return connection
