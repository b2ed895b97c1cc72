"""calls/writer_process.py: the webhook's writer in a child process of the server."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from prometheus_client import REGISTRY

from bench.cpu import descendants
from calls import writer_process
from calls.ingest import Stored
from calls.models import Call, CallEvent
from calls.payloads import PayloadError, parse_webhook
from calls.writer_frames import (
    BATCH,
    FAILED,
    STORED,
    UNUSABLE,
    Request,
    Result,
    decode_requests,
    decode_results,
    encode_request,
    encode_results,
)
from calls.writer_process import ProcessWriter, WriterUnavailable
from tests import retell
from tests.conftest import StartServer
from tests.http import post_webhook
from tests.servers import RunningServer, database_url

BODY = retell.fixture_bytes("call_ended")


def batches_written() -> tuple[float, float]:
    """(transactions, deliveries in them) so far, as the batch metric counts them."""
    sample = REGISTRY.get_sample_value
    return (
        sample("retellhub_webhook_batch_deliveries_count") or 0.0,
        sample("retellhub_webhook_batch_deliveries_sum") or 0.0,
    )


def writer_exits() -> float:
    return REGISTRY.get_sample_value("retellhub_webhook_writer_exits_total") or 0.0


def delivery(body: bytes = BODY, *, source_ip: str | None = "100.20.5.228") -> dict[str, Any]:
    """``store``'s arguments for a verified body."""
    return {"body": body, "source_ip": source_ip, "key_fingerprint": "k:ü"}


def bodies(prefix: str, count: int) -> list[bytes]:
    return [
        retell.compact(retell.with_call_id(retell.fixture_json("call_ended"), f"{prefix}_{n}"))
        for n in range(count)
    ]


# --- Frames -----------------------------------------------------------------------------


def test_requests_cross_the_socket_intact_however_the_bytes_are_split():
    sent = [
        (1, delivery()),
        (2, delivery(source_ip=None)),
        (3, delivery(retell.fixture_bytes("call_started"))),
    ]
    stream = b"".join(encode_request(request_id, **item) for request_id, item in sent)
    buffer, received = bytearray(), list[Request]()
    for start in range(0, len(stream), 7):  # a few bytes at a time
        buffer += stream[start : start + 7]
        received.extend(decode_requests(buffer, limit=64))
    assert buffer == b""
    assert [(r.request_id, r.source_ip, r.key_fingerprint, r.body) for r in received] == [
        (request_id, item["source_ip"], item["key_fingerprint"], item["body"])
        for request_id, item in sent
    ]


def test_a_batch_takes_at_most_its_limit_and_leaves_the_rest():
    buffer = bytearray(b"".join(encode_request(n, **delivery()) for n in range(5)))
    assert [r.request_id for r in decode_requests(buffer, limit=3)] == [0, 1, 2]
    assert [r.request_id for r in decode_requests(buffer, limit=3)] == [3, 4]


def test_results_carry_the_names_the_server_logs_whatever_their_characters():
    sent = [
        Result(1, STORED, 42, "call_ended", "call_ü_\u2603"),
        Result(2, UNUSABLE, 0, "", ""),
        Result(2**32 - 1, FAILED, 0, "a_new_event_name", "c" * 128),
    ]
    frame = encode_results(sent, written=2, seconds=0.25)  # the unusable one was not written
    written, seconds, size = BATCH.unpack_from(frame)
    assert (written, seconds, size) == (2, 0.25, len(frame) - BATCH.size)
    assert list(decode_results(frame[BATCH.size :])) == sent


# --- The writer, in this process's loop, against the test database ---------------------


@pytest.fixture(autouse=True)
def child_uses_the_test_database(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children read their settings from the environment, as a server's would."""
    monkeypatch.setenv("DATABASE_URL", database_url(connection.settings_dict))


@pytest.mark.django_db(transaction=True)
def test_it_stores_a_delivery_once_and_reports_re_deliveries():
    async def run() -> list[Stored]:
        writer = ProcessWriter()
        try:
            first = await writer.store(**delivery())
            again = await asyncio.gather(*(writer.store(**delivery()) for _ in range(5)))
            return [first, *again]
        finally:
            await writer.aclose()

    exits_before = writer_exits()
    stored = asyncio.run(run())
    assert [s.created for s in stored] == [True, False, False, False, False, False]
    # The child read the names the server logs and counts.
    parsed = parse_webhook(BODY)
    assert {(s.event, s.call_id) for s in stored} == {(parsed.event, parsed.call_id)}
    assert writer_exits() == exits_before  # closed, not failed
    event = CallEvent.objects.get()
    assert (event.delivery_count, event.source_ip, event.key_fingerprint) == (
        6,
        "100.20.5.228",
        "k:ü",
    )
    assert event.raw_body.encode() == BODY


UNUSABLE_BODIES = [
    b"not json",
    b"[1, 2]",
    b'{"call": {"call_id": "call_no_event"}}',
    b'{"event": "call_ended", "call": {"agent_id": "no call id"}}',
    b"\xff\xfe",
]


@pytest.mark.django_db(transaction=True)
def test_the_child_refuses_unusable_bodies_with_the_servers_own_message():
    """The server does not parse what it hands over; the child does, and an unusable body
    comes back as the PayloadError the server would have raised, nothing stored."""

    async def run() -> list[str]:
        writer = ProcessWriter()
        messages = []
        try:
            for body in UNUSABLE_BODIES:
                with pytest.raises(PayloadError) as raised:
                    await writer.store(**delivery(body))
                messages.append(str(raised.value))
            # The child is still there and writing.
            assert (await writer.store(**delivery())).created
        finally:
            await writer.aclose()
        return messages

    expected = []
    for body in UNUSABLE_BODIES:
        with pytest.raises(PayloadError) as raised:
            parse_webhook(body)
        expected.append(str(raised.value))
    batches_before, written_before = batches_written()
    assert asyncio.run(run()) == expected
    assert CallEvent.objects.count() == 1
    batches, written = batches_written()
    assert (batches - batches_before, written - written_before) == (1, 1)  # none for those


@pytest.mark.django_db(transaction=True)
def test_deliveries_are_spread_over_several_children(settings: Any):
    settings.WEBHOOK_WRITER_PROCESSES = 2
    items = [delivery(body) for body in bodies("call_spread", 20)]

    async def run() -> tuple[list[bool], list[int]]:
        writer = ProcessWriter()
        try:
            stored = [s.created for s in await asyncio.gather(*(writer.store(**i) for i in items))]
            # Requests each child was sent (its last request id).
            return list(stored), [child._next_id for child in writer._children]
        finally:
            await writer.aclose()

    stored, sent = asyncio.run(run())
    assert stored == [True] * 20
    assert len(sent) == 2
    assert sum(sent) == 20
    assert min(sent) > 0  # both took a share
    assert CallEvent.objects.filter(call__call_id__startswith="call_spread").count() == 20


@pytest.mark.django_db(transaction=True)
def test_a_child_that_cannot_start_fails_its_deliveries_and_is_not_respawned_at_once(
    monkeypatch: pytest.MonkeyPatch,
):
    # The child imports settings that do not exist: it exits at once, as a broken deploy would.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "retellhub.no_such_settings")
    spawned = []
    real_start = writer_process._Child._start

    async def counted_start(self: Any) -> None:
        spawned.append(self)
        await real_start(self)

    monkeypatch.setattr(writer_process._Child, "_start", counted_start)

    async def run() -> list[str]:
        writer = ProcessWriter()
        errors = []
        # Each child fails the delivery it was handed; once all have died, deliveries fail
        # at once, without a new child.
        for _ in range(settings.WEBHOOK_WRITER_PROCESSES + 3):
            with pytest.raises(WriterUnavailable) as raised:
                await writer.store(**delivery())
            errors.append(str(raised.value))
        await writer.aclose()
        return errors

    exits_before = writer_exits()
    errors = asyncio.run(run())
    exits = writer_exits() - exits_before
    assert exits == settings.WEBHOOK_WRITER_PROCESSES
    assert errors[0] == "the webhook writer process died"
    assert set(errors) <= {errors[0], "the webhook writer process keeps dying; see its log"}
    assert "keeps dying" in errors[-1]
    assert len(spawned) == settings.WEBHOOK_WRITER_PROCESSES  # once each, then no more
    assert CallEvent.objects.count() == 0


# --- Against real servers ---------------------------------------------------------------


def writer_children(server: RunningServer) -> list[int]:
    """Process ids of the server's webhook writers (in its process tree)."""
    return [pid for pid in descendants(server.process.pid) if _is_writer(pid)]


def _is_writer(pid: int) -> bool:
    try:
        return b"calls.writer_child" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # it ended while we looked


@pytest.fixture
def uvicorn_server(asgi_server_factory: StartServer) -> RunningServer:
    return asgi_server_factory({}, kind="uvicorn")


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


@needs_proc
@pytest.mark.django_db(transaction=True)
def test_the_server_starts_new_writers_after_they_were_killed(uvicorn_server):
    first = bodies("call_killed_writer", 2)
    assert post_webhook(uvicorn_server.url, first[0], retell.signature(first[0])).status == 200
    killed = writer_children(uvicorn_server)
    assert len(killed) == settings.WEBHOOK_WRITER_PROCESSES
    for child in killed:
        os.kill(child, signal.SIGKILL)
    statuses = []
    for _ in range(40):  # the deaths are noticed when the sockets close, not timed
        reply = post_webhook(uvicorn_server.url, first[1], retell.signature(first[1]))
        statuses.append(reply.status)
        if reply.status == 200:
            break
        time.sleep(0.1)
    assert statuses[-1] == 200
    assert set(statuses) <= {200, 500}  # 500: sent to a dead child; Retell would retry
    started = writer_children(uvicorn_server)
    assert started
    assert not set(started) & set(killed)
    assert CallEvent.objects.filter(call__call_id__startswith="call_killed_writer").count() == 2


@needs_proc
@pytest.mark.django_db(transaction=True)
def test_a_writer_outlives_signals_meant_for_its_servers_process_group(uvicorn_server):
    """Ctrl+C in a terminal or a stop signal to the whole group reaches the writers too;
    they leave when the server closes their socket, after it finished what they hold."""
    first, second = bodies("call_signalled_writer", 2)
    assert post_webhook(uvicorn_server.url, first, retell.signature(first)).status == 200
    children = writer_children(uvicorn_server)
    for child in children:
        os.kill(child, signal.SIGINT)
        os.kill(child, signal.SIGTERM)
    assert post_webhook(uvicorn_server.url, second, retell.signature(second)).status == 200
    assert writer_children(uvicorn_server) == children
    assert "KeyboardInterrupt" not in uvicorn_server.log()


@pytest.fixture
def refused_marker() -> Iterator[str]:
    """A trigger that makes the database refuse any event whose body holds the marker."""
    marker = "refuse-this-delivery"
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute(
                "CREATE TRIGGER refuse_marked BEFORE INSERT ON calls_callevent "
                f"WHEN NEW.raw_body LIKE '%{marker}%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            cursor.execute(
                "CREATE FUNCTION refuse_marked() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.raw_body LIKE '%{marker}%' THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER refuse_marked BEFORE INSERT ON calls_callevent "
                "FOR EACH ROW EXECUTE FUNCTION refuse_marked()"
            )
    yield marker
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute("DROP TRIGGER refuse_marked")
        else:
            cursor.execute("DROP TRIGGER refuse_marked ON calls_callevent")
            cursor.execute("DROP FUNCTION refuse_marked()")


@pytest.mark.django_db(transaction=True)
def test_a_delivery_the_database_refuses_answers_500_and_fails_no_other(
    uvicorn_server: RunningServer, refused_marker: str
):
    good = bodies("call_refusal_neighbour", 12)
    bad = retell.compact(
        retell.with_call_id(
            retell.fixture_json("call_ended") | {"note": refused_marker}, "call_refused"
        )
    )

    def deliver(body: bytes) -> int:
        return post_webhook(uvicorn_server.url, body, retell.signature(body)).status

    with ThreadPoolExecutor(max_workers=13) as pool:
        statuses = list(pool.map(deliver, [*good[:6], bad, *good[6:]]))
    assert statuses == [200] * 6 + [500] + [200] * 6
    assert not CallEvent.objects.filter(call__call_id="call_refused").exists()
    assert not Call.objects.filter(call_id="call_refused").exists()  # rolled back whole
    assert (
        CallEvent.objects.filter(call__call_id__startswith="call_refusal_neighbour").count() == 12
    )
    assert "webhook delivery not stored" in uvicorn_server.log()


@pytest.mark.django_db(transaction=True)
def test_the_thread_writer_is_still_there_when_chosen(asgi_server_factory: StartServer):
    server = asgi_server_factory({"WEBHOOK_WRITER": "thread"}, kind="uvicorn")
    for body in bodies("call_thread_writer", 3):
        assert post_webhook(server.url, body, retell.signature(body)).status == 200
    assert CallEvent.objects.filter(call__call_id__startswith="call_thread_writer").count() == 3
    if Path("/proc/self/task").exists():
        assert writer_children(server) == []


def test_writer_processes_connect_with_sequential_scans_priced_out():
    # Their locked read may then be prepared: a kept plan uses the call id's index.
    assert writer_process._child_environment()["DATABASE_INDEX_SCANS_ONLY"] == "true"
