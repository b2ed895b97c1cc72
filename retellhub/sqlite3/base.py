"""Django's SQLite backend, with two of its steps made cheaper for the webhook's writer.

The writer is the SQLite deployment's bottleneck (one process writes), and it runs the
same few statements for every batch.

Placeholders: Django writes statements with ``%s`` placeholders; Python's sqlite3 wants
``?``, so Django's backend rewrites every statement with a regular expression before each
run. The writer's statements have hundreds of placeholders between them (a new call's row
has 37 columns): under callgrind the rewriting was 5% of the instructions the SQLite
writer spent per delivery (bench/writer_cpu.py --callgrind), for a result that never
changes. Here the rewritten text is kept, per statement text, for statements up to
``CACHED_LENGTH`` characters.

Datetimes: ``DatabaseOperations.adapt_datetimefield_value`` gives Django's result for an
aware datetime with fewer steps (about 1.7% of those instructions).

Everything else is Django's own backend (retellhub/databases.py selects this one for SQLite).
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db.backends.sqlite3 import base, operations

# Statements longer than this (multi-row inserts of large batches) are rewritten each
# time, as Django does; shorter ones are few and repeat (at most ``CACHED_STATEMENTS``).
CACHED_LENGTH = 16_384
CACHED_STATEMENTS = 256


@lru_cache(maxsize=CACHED_STATEMENTS)
def _qmark(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query: str, *, param_names: Any = None) -> str:
        if param_names is None and len(query) <= CACHED_LENGTH:
            return _qmark(query)
        # django-stubs does not declare convert_query; Django 5.2's backend has it.
        return super().convert_query(query, param_names=param_names)  # type: ignore[misc]


class DatabaseOperations(operations.DatabaseOperations):
    def adapt_datetimefield_value(self, value: Any) -> Any:
        """Django's conversion of an aware datetime (to the database's time zone, naive,
        as text) without its layers of checks; anything else goes to Django's. The webhook
        writer converts about seven per delivery."""
        zone = self.connection.timezone  # None unless USE_TZ
        if type(value) is datetime and zone is not None and value.utcoffset() is not None:
            return str(value.astimezone(zone).replace(tzinfo=None))
        return super().adapt_datetimefield_value(value)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def create_cursor(self, name: str | None = None) -> SQLiteCursorWrapper:
        return self.connection.cursor(factory=SQLiteCursorWrapper)
