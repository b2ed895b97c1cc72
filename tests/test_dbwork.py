from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from calls import dbwork
from calls.models import Call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool(settings):
    settings.DB_WORKER_THREADS = 2
    yield
    dbwork.db_threads.reset()


def create_call(*, call_id: str) -> str:
    Call.objects.create(call_id=call_id)
    return threading.current_thread().name


def call_exists(*, call_id: str) -> bool:
    # Read through the pool too: the test's own event-loop thread would keep a connection.
    return Call.objects.filter(call_id=call_id).exists()


def fail_inside_a_transaction() -> None:
    with transaction.atomic():
        Call.objects.create(call_id="call_rolled_back")
        raise RuntimeError("boom")


def in_atomic_block() -> bool:
    return connection.in_atomic_block


def test_it_runs_jobs_on_long_lived_database_threads(pool):
    name = dbwork.run_db_sync(create_call, call_id="call_a")
    assert name.startswith("retellhub-db")
    assert dbwork.run_db_sync(call_exists, call_id="call_a")


def test_a_failed_job_leaves_nothing_behind_for_the_next(pool):
    with pytest.raises(RuntimeError):
        dbwork.run_db_sync(fail_inside_a_transaction)
    assert dbwork.run_db_sync(in_atomic_block) is False
    assert not dbwork.run_db_sync(call_exists, call_id="call_rolled_back")


def connection_held() -> bool:
    return connection.connection is not None


def test_between_jobs_sqlite_keeps_and_a_pool_takes_back_the_connection(pool, settings):
    settings.DB_WORKER_THREADS = 1  # one thread, so both jobs see the same connection slot
    dbwork.run_db_sync(create_call, call_id="call_b")
    held = dbwork.run_db_sync(connection_held)
    pooled = getattr(connection, "pool", None) is not None
    assert held is (not pooled)


def test_a_run_of_jobs_holds_its_connection_until_released(pool, settings):
    settings.DB_WORKER_THREADS = 1

    def run_of_jobs() -> list[bool]:
        held = []
        for n in range(2):
            dbwork.run_db_job_holding_connection(create_call, call_id=f"call_run_{n}")
            held.append(connection_held())
        dbwork.release_pooled_connections()
        return [*held, connection_held()]

    held = dbwork.db_threads.get().submit(run_of_jobs).result()
    pooled = getattr(connection, "pool", None) is not None
    # Kept between the jobs either way; at the end a pool takes its connection back.
    assert held == [True, True, not pooled]
