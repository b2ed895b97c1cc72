"""``DATABASES`` from ``DATABASE_URL``: the options this project sets for SQLite and for
PostgreSQL, and why (retellhub/settings.py uses ``database_config``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dj_database_url

from retellhub.env import env_bool, env_choice, env_int

# A 200 tells Retell the delivery is stored and will not be sent again. In WAL mode,
# synchronous=NORMAL skips the fsync at commit, so a power cut or OS crash can lose the
# last committed deliveries; FULL syncs each commit (shared by a whole webhook batch). On
# the 2-core machine FULL cost about 10-20% of SQLite webhook throughput at c=16.
SQLITE_SYNCHRONOUS_MODES = ("FULL", "EXTRA", "NORMAL")


def _sqlite_synchronous() -> str:
    return env_choice("SQLITE_SYNCHRONOUS", "FULL", SQLITE_SYNCHRONOUS_MODES)


# Django's SQLite backend with two steps made cheaper for the webhook's writer: placeholder
# rewriting kept per statement, aware datetimes converted in one step
# (retellhub/sqlite3/base.py).
SQLITE_ENGINE = "retellhub.sqlite3"


def database_config(url: str, *, test_dir: Path) -> dict[str, Any]:
    """Django's ``DATABASES`` entry for ``url``, with this project's options for SQLite and
    PostgreSQL; a SQLite test database goes in ``test_dir``."""
    config: dict[str, Any] = dict(
        dj_database_url.parse(
            url,
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
            conn_health_checks=True,
        )
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["ENGINE"] = SQLITE_ENGINE
        config["OPTIONS"] = {
            # IMMEDIATE takes the write lock at BEGIN, so concurrent writers wait on
            # busy_timeout instead of failing with "database is locked" when a read
            # transaction tries to upgrade. WAL lets readers run beside the writer.
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("SQLITE_TIMEOUT_SECONDS", 30),
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={_sqlite_synchronous()};",
        }
        # Tests run the real ASGI server in a subprocess, which needs a file, not memory;
        # the process id keeps parallel test runs on one machine apart.
        config["TEST"] = {"NAME": str(test_dir / f"test_retellhub_{os.getpid()}.sqlite3")}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        pooled = env_bool("DATABASE_POOL", True)
        options = config.setdefault("OPTIONS", {})
        options.update(_postgresql_options(pooled=pooled))
        if pooled and "prepare_threshold" in options and index_scans_only():
            # Only where prepared plans are kept (else nothing to gain), and only on the
            # project's own pool: behind PgBouncer (DATABASE_POOL=false), which refuses a
            # startup option it does not track, the connections would fail.
            startup = options.get("options", "")  # any from the URL are kept
            options["options"] = f"{startup} {INDEX_SCANS_ONLY_OPTION}".strip()
        if pooled:
            # Under ASGI every request runs its sync code in a fresh thread, so without a
            # pool each webhook would pay for a new PostgreSQL connection. Pooling requires
            # CONN_MAX_AGE=0 (the pool owns the connections' lifetime).
            config["CONN_MAX_AGE"] = 0
            config["OPTIONS"]["pool"] = {
                "min_size": env_int("DATABASE_POOL_MIN_SIZE", 2),
                "max_size": env_int("DATABASE_POOL_MAX_SIZE", 20),
                "timeout": env_int("DATABASE_POOL_TIMEOUT_SECONDS", 10),
            }
    return config


# A statement psycopg has run this many times on a connection is prepared there (psycopg's
# own default), and later runs skip PostgreSQL's parsing and planning.
PREPARE_THRESHOLD = 5


def _postgresql_options(*, pooled: bool) -> dict[str, Any]:
    # Server-side binding sends parameters apart from the SQL text. With Django's default
    # client-side binding, psycopg quotes every value into the statement in Python and
    # PostgreSQL lexes it back out: for the webhook's 10-20 KB bodies and call objects that
    # was about a fifth of the database thread's CPU.
    options: dict[str, Any] = {
        "server_side_binding": env_bool("DATABASE_SERVER_SIDE_BINDING", True)
    }
    # Prepared statements: the webhook runs the same few statements for every batch, and
    # parsing and planning them each time was about a quarter of PostgreSQL's CPU per
    # delivery. Django leaves them off because a pooler in transaction mode (PgBouncer
    # before 1.21, or without max_prepared_statements) loses them between transactions; so
    # they follow DATABASE_POOL, off for the PgBouncer set-up the README describes.
    if env_bool("DATABASE_PREPARED_STATEMENTS", pooled):
        options["prepare_threshold"] = PREPARE_THRESHOLD
    return options


INDEX_SCANS_ONLY_OPTION = "-c enable_seqscan=off"


def index_scans_only() -> bool:
    """Whether these connections are asked to price out sequential scans where an index
    serves (``DATABASE_INDEX_SCANS_ONLY``): the server asks it for its webhook writer
    processes (calls/writer_process.py). ``database_config`` applies it only with the
    project's own pool and prepared statements.

    Their statements all find rows by a unique key. A plan prepared while a table was
    nearly empty, before autovacuum first analysed it, would otherwise scan the whole table
    for as long as it is kept (calls/rowreads.py's locked read), so that read had to be
    planned anew for every batch: about a tenth of PostgreSQL's CPU per delivery on the
    2-core benchmark machine. With sequential scans priced out it is prepared once and
    finds its rows by the index whatever the statistics say.
    """
    return env_bool("DATABASE_INDEX_SCANS_ONLY", False)
