"""Migrating the test database to an earlier schema and back, for migration tests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

Target = tuple[str, str]


def delivery_body(event: str, call: dict[str, Any], *, key: str = "call") -> str:
    """A delivery's raw body as Retell sends it, for rows written at an earlier schema."""
    document = {"event": event, key: call}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def migrate(target: Target) -> Apps:
    """Migrate the app to ``target``; the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    executor.loader.build_graph()  # what is applied changed
    return executor.loader.project_state([target]).apps


@contextmanager
def schema_at(target: Target) -> Iterator[Apps]:
    """The database migrated to ``target`` for the block, then to the app's latest again.

    Needs a transactional test (``django_db(transaction=True)``): SQLite cannot change its
    schema inside the atomic block of an ordinary test.
    """
    app = target[0]
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes(app)
    try:
        yield migrate(target)
    finally:
        MigrationExecutor(connection).migrate(latest)


def restored_compression(*, table: str, column: str, before: Target, after: Target) -> str:
    """Migrate to ``after`` and back to ``before``; how PostgreSQL then compresses the
    ``column`` the backwards step re-created ("l": LZ4, as migration 0004 set it). Skips
    where this PostgreSQL was built without LZ4."""
    from tests.test_storage import _compression, migration

    migrate(after)
    migrate(before)
    with connection.cursor() as cursor:
        if not migration._lz4_available(cursor):
            pytest.skip("this PostgreSQL was built without LZ4; the migration keeps pglz")
    return _compression(table)[column]
