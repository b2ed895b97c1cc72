"""Django's SQLite backend, remembering how it rewrote each statement's placeholders.

Django writes statements with ``%s`` placeholders; Python's sqlite3 wants ``?``, so
Django's backend rewrites every statement with a regular expression before each run.
The webhook's writer runs the same few statements for every batch, with hundreds of
placeholders between them (a new call's row has 37 columns): under callgrind the rewriting
was 5% of the instructions the SQLite writer spent per delivery
(bench/writer_cpu.py --callgrind), for a result that never changes. Here the rewritten
text is kept, per statement text, for statements up to ``CACHED_LENGTH`` characters.
Everything else is Django's own backend (settings.py selects this one for SQLite).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.db.backends.sqlite3 import base

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


class DatabaseWrapper(base.DatabaseWrapper):
    def create_cursor(self, name: str | None = None) -> SQLiteCursorWrapper:
        return self.connection.cursor(factory=SQLiteCursorWrapper)
