from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import Client

from tests import retell
from tests.servers import SERVER_KINDS, RunningServer, asgi_server_process, database_url

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def _retell_keys(settings: Any) -> None:
    settings.RETELL_API_KEYS = list(retell.TEST_KEYS)
    settings.RETELL_API_KEY = retell.PRIMARY_KEY
    # In-process tests roll back one transaction per test; the webhook's database work must
    # share it (the daphne-backed tests exercise the real pool).
    settings.DB_WORKER_THREADS = 0


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Close connections and pools before the test database is dropped, or the drop fails
    ("database is being accessed by other users")."""
    yield
    with django_db_blocker.unblock():
        # Async tests' ORM calls (``await qs.alast()``) run on asgiref's one shared thread,
        # which outlives them with its connection open.
        SyncToAsync.single_thread_executor.submit(connections.close_all).result()
        # A DatabaseWrapper is a reference cycle (its client, features, ops... point back at
        # it), so one left by a finished thread still holding a connection lives until a full
        # collection, which retellhub/asgi.py makes rare: collect now, closing its connection.
        gc.collect()
        for connection in connections.all():
            if connection.settings_dict.get("OPTIONS", {}).get("pool"):
                connection.close()
                connection.close_pool()  # type: ignore[attr-defined]


def backend_vendor() -> str:
    return connections["default"].vendor


@pytest.fixture
def postgres_only() -> None:
    if backend_vendor() != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://... (the CI's second pass)")


SignedPost = Callable[..., Any]


@pytest.fixture
def webhook_client(client: Client) -> Any:
    """What posts to /webhook: Django's test client, so the DRF view answers.

    Modules testing the webhook's contract override it to run each test against both
    transports (tests/asgi.py).
    """
    return client


@pytest.fixture
def signed_post(webhook_client: Any) -> SignedPost:
    """POST a body to /webhook signed like Retell would (override key, time or header)."""

    def post(
        body: bytes,
        *,
        key: str = retell.PRIMARY_KEY,
        timestamp_ms: int | None = None,
        header: str | None = None,
        **extra: Any,
    ) -> Any:
        value = (
            header
            if header is not None
            else retell.signature(body, key=key, timestamp_ms=timestamp_ms)
        )
        return webhook_client.post(
            "/webhook",
            data=body,
            content_type="application/json",
            headers={"X-Retell-Signature": value},
            **extra,
        )

    return post


@pytest.fixture(scope="session", params=SERVER_KINDS)
def asgi_server(
    request: pytest.FixtureRequest,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """The real ASGI app on a loopback port, sharing the test database; every test using
    it runs under daphne and under ``manage.py serve`` (uvicorn).

    Tests using it need ``transactional_db`` so their rows are committed and visible to
    the server process (and theirs to the test).
    """
    with django_db_blocker.unblock():
        url = database_url(connections["default"].settings_dict)
    log_path = tmp_path_factory.mktemp(request.param) / "server.log"
    with asgi_server_process(_server_env(url), log_path, kind=request.param) as server:
        yield server


def _server_env(database: str) -> dict[str, str]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": "test-secret-key-for-the-asgi-server-0123456789",
        "RETELL_API_KEY": ",".join(retell.TEST_KEYS),
        "DATABASE_URL": database,
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "LOG_LEVEL": "INFO",
    }


StartServer = Callable[..., RunningServer]


@pytest.fixture(scope="session")
def asgi_server_factory(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartServer]:
    """Start another server like ``asgi_server``, with extra environment variables.

    For configurations the shared server does not have (e.g. ``AGENT_RESPONDER=openai``
    against a fake model). Every server started stops when the session ends.
    """
    with django_db_blocker.unblock():
        url = database_url(connections["default"].settings_dict)
    with ExitStack() as servers:

        def start(extra_env: Mapping[str, str], *, kind: str = "daphne") -> RunningServer:
            log_path = tmp_path_factory.mktemp(kind) / "server.log"
            env = {**_server_env(url), **extra_env}
            return servers.enter_context(asgi_server_process(env, log_path, kind=kind))

        yield start


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
