"""calls/ingest.py: the webhook's writer, on real database threads, with group commit."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from typing import Any

import pytest
from django.db import connection
from prometheus_client import REGISTRY

from calls import dbwork, ingest, services
from calls.models import Call, CallEvent
from calls.payloads import parse_webhook
from calls.services import DeliveryOutcome, IncomingDelivery
from tests import retell

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def db_threads(settings: Any) -> Any:
    settings.DB_WORKER_THREADS = 1
    yield
    dbwork.db_threads.reset()


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch written; the first waits until the test releases it."""
    sizes: list[int] = []
    release = threading.Event()
    real = ingest.call_events_record

    def recording(*, deliveries: list[IncomingDelivery]) -> list[DeliveryOutcome]:
        if not sizes:
            assert release.wait(timeout=10)
        sizes.append(len(deliveries))
        return real(deliveries=deliveries)

    monkeypatch.setattr(ingest, "call_events_record", recording)
    monkeypatch.setattr(ingest, "release_first_batch", release, raising=False)
    return sizes


def delivery(event: str, call_id: str) -> IncomingDelivery:
    body = retell.compact(retell.with_call_id(retell.fixture_json(event), call_id))
    return IncomingDelivery(
        event=parse_webhook(body), raw_body=body, source_ip="127.0.0.1", key_fingerprint="k"
    )


async def store_all(writer: ingest.DeliveryWriter, items: list[IncomingDelivery]) -> list[Any]:
    tasks = [asyncio.create_task(writer.store(item)) for item in items]
    # Everything after the first is queued while the first batch is held, then released.
    while len(writer._queue) < len(items) - 1:
        await asyncio.sleep(0.005)
    ingest.release_first_batch.set()  # type: ignore[attr-defined]
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_concurrent_deliveries_share_a_transaction_and_each_gets_its_own_outcome(
    db_threads: None, batches: list[int]
) -> None:
    items = [
        delivery(event, f"call_batch_{n}")
        for n in range(8)
        for event in ("call_started", "call_ended", "call_analyzed")
    ]
    outcomes = asyncio.run(store_all(ingest.DeliveryWriter(), items))
    assert batches == [1, len(items) - 1]
    for item, outcome in zip(items, outcomes, strict=True):
        assert outcome.created
        assert outcome.event.body_sha256 == hashlib.sha256(item.raw_body).hexdigest()
        assert outcome.call.call_id == item.event.call_id
    assert CallEvent.objects.count() == len(items)
    assert set(Call.objects.values_list("status", flat=True)) == {"ended"}


def batch_histogram() -> dict[str, float]:
    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    return {
        "batches": sample("retellhub_webhook_batch_deliveries_count"),
        "deliveries": sample("retellhub_webhook_batch_deliveries_sum"),
        "one": sample("retellhub_webhook_batch_deliveries_bucket", le="1.0"),
        "timed": sample("retellhub_webhook_batch_seconds_count"),
    }


def test_each_transaction_is_counted_with_its_size_and_time(
    db_threads: None, batches: list[int]
) -> None:
    before = batch_histogram()
    items = [delivery("call_started", f"call_counted_{n}") for n in range(5)]
    asyncio.run(store_all(ingest.DeliveryWriter(), items))
    after = batch_histogram()
    assert batches == [1, 4]
    assert {name: after[name] - before[name] for name in after} == {
        "batches": 2,
        "deliveries": 5,
        "one": 1,
        "timed": 2,
    }


def test_a_delivery_the_database_refuses_fails_alone(
    db_threads: None, batches: list[int], monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    real_merge = services.call_merge

    def merge_or_fail(**kwargs: Any) -> list[str]:
        if kwargs["call"].call_id == "call_poison":
            raise RuntimeError("refused")
        return real_merge(**kwargs)

    monkeypatch.setattr(services, "call_merge", merge_or_fail)
    items = [delivery("call_started", f"call_ok_{n}") for n in range(4)]
    items.insert(2, delivery("call_started", "call_poison"))
    timed_before = batch_histogram()["timed"]
    with caplog.at_level(logging.WARNING, logger="calls.ingest"):
        results = asyncio.run(store_all(ingest.DeliveryWriter(), items))
    assert [isinstance(result, RuntimeError) for result in results] == [
        False, False, True, False, False
    ]  # fmt: skip
    assert "writing each alone" in caplog.text
    assert sorted(Call.objects.values_list("call_id", flat=True)) == [
        f"call_ok_{n}" for n in range(4)
    ]
    # The failed batch, then each of its four deliveries alone.
    assert batches == [1, 4, 1, 1, 1, 1]
    assert batch_histogram()["timed"] - timed_before == 6, "failed transactions count too"


def test_identical_deliveries_in_one_batch_make_one_row(
    db_threads: None, batches: list[int]
) -> None:
    items = [delivery("call_ended", "call_retried")] * 6
    outcomes = asyncio.run(store_all(ingest.DeliveryWriter(), items))
    assert [outcome.created for outcome in outcomes] == [True] + [False] * 5
    assert CallEvent.objects.get().delivery_count == 6


def test_the_queue_drains_and_the_writer_starts_again(db_threads: None) -> None:
    writer = ingest.DeliveryWriter()

    async def one_at_a_time() -> list[bool]:
        results = []
        for n in range(3):
            outcome = await writer.store(delivery("call_started", f"call_serial_{n}"))
            results.append(outcome.created)
            assert writer._draining in (0, 1)
        return results

    assert asyncio.run(one_at_a_time()) == [True, True, True]
    # The drainer finds the queue empty just after handing back the last outcome.
    stopped = threading.Event()
    for _ in range(500):
        if writer._draining == 0:
            stopped.set()
            break
        stopped.wait(0.01)
    assert stopped.is_set()


def _pool_requests() -> int:
    pool: Any = getattr(connection, "pool")  # noqa: B009 - PostgreSQL's wrapper only
    return int(pool.get_stats()["requests_num"])


def test_back_to_back_batches_take_one_pooled_connection_and_hand_it_back(
    db_threads: None, batches: list[int], postgres_only: None
) -> None:
    before = _pool_requests()
    items = [delivery("call_started", f"call_pooled_{n}") for n in range(4)]
    outcomes = asyncio.run(store_all(ingest.DeliveryWriter(), items))
    assert batches == [1, 3]
    assert all(outcome.created for outcome in outcomes)
    # Queued behind the drain on the one database thread: runs once it has finished.
    assert dbwork.run_db_sync(lambda: connection.connection is None)
    assert _pool_requests() - before == 1
