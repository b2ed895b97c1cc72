"""The frames between the server and its webhook writer processes (calls/writer_process.py).

Frames on the socket pair (network byte order):

- to the child, one per delivery: ``REQUEST`` (request id, body length, metadata length),
  the metadata (source address and key fingerprint, UTF-8, newline-separated), the body;
- to the parent, one per batch: ``BATCH`` (deliveries the transaction wrote, seconds it
  took, bytes of results that follow), then per delivery a ``RESULT`` (request id,
  outcome, the call's primary key, lengths of the two names) and the event's name and call
  id (UTF-8). Unusable bodies get a result but are not written: a batch of only those has
  no transaction and says 0 deliveries.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

REQUEST = struct.Struct("!IIH")
BATCH = struct.Struct("!IdI")
RESULT = struct.Struct("!IBqHH")
# A delivery's outcome, in its RESULT.
DUPLICATE, STORED, FAILED, UNUSABLE = 0, 1, 2, 3


def encode_request(
    request_id: int, *, body: bytes, source_ip: str | None, key_fingerprint: str
) -> bytes:
    meta = f"{source_ip or ''}\n{key_fingerprint}".encode()
    head = REQUEST.pack(request_id, len(body), len(meta))
    return b"".join((head, meta, body))


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int
    source_ip: str | None
    key_fingerprint: str
    body: bytes


def decode_requests(buffer: bytearray, *, limit: int) -> Iterator[Request]:
    """The complete requests at the start of ``buffer`` (at most ``limit``), removed from it
    as they are read; an incomplete last one stays for more bytes."""
    taken = 0
    while taken < limit and len(buffer) >= REQUEST.size:
        request_id, body_length, meta_length = REQUEST.unpack_from(buffer)
        end = REQUEST.size + meta_length + body_length
        if len(buffer) < end:
            return
        meta = bytes(buffer[REQUEST.size : REQUEST.size + meta_length]).decode()
        body = bytes(buffer[REQUEST.size + meta_length : end])
        del buffer[:end]
        source_ip, key_fingerprint = meta.split("\n", 1)
        taken += 1
        yield Request(request_id, source_ip or None, key_fingerprint, body)


@dataclass(frozen=True, slots=True)
class Result:
    request_id: int
    status: int
    call_pk: int
    event: str  # "" where the body was unusable
    call_id: str


def encode_results(results: list[Result], *, written: int, seconds: float) -> bytes:
    parts = []
    for r in results:
        event, call_id = r.event.encode(), r.call_id.encode()
        parts += [RESULT.pack(r.request_id, r.status, r.call_pk, len(event), len(call_id))]
        parts += [event, call_id]
    data = b"".join(parts)
    return BATCH.pack(written, seconds, len(data)) + data


def decode_results(data: bytes) -> Iterator[Result]:
    """The results in ``data``, the bytes a ``BATCH`` header announced."""
    offset = 0
    while offset < len(data):
        request_id, status, call_pk, event_length, call_id_length = RESULT.unpack_from(data, offset)
        offset += RESULT.size
        event = data[offset : offset + event_length].decode()
        offset += event_length
        call_id = data[offset : offset + call_id_length].decode()
        offset += call_id_length
        yield Result(request_id, status, call_pk, event, call_id)
