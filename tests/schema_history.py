"""Migrating the test database to an earlier schema and back, for migration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

Target = tuple[str, str]


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
