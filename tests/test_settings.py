"""Configuration from the environment, and start-up refusing unsafe production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from retellhub import env
from retellhub.databases import database_config
from tests.servers import ROOT


def load_settings(**variables: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "RETELL_API_KEY", "DATABASE_URL"}
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings;"
            " print(settings.RETELL_API_KEYS, settings.DATABASES['default']['ENGINE'])",
        ],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "retellhub.settings", **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_without_secret_key_stops_with_a_clear_message():
    result = load_settings(DEBUG="false", RETELL_API_KEY="key_live")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_production_without_retell_key_stops_with_a_clear_message():
    result = load_settings(DEBUG="false", SECRET_KEY="s" * 50)
    assert result.returncode != 0
    assert "RETELL_API_KEY is not set" in result.stderr


def test_production_reads_a_comma_separated_key_list():
    result = load_settings(DEBUG="false", SECRET_KEY="s" * 50, RETELL_API_KEY="key_a, key_b")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['key_a', 'key_b'] retellhub.sqlite3"


def test_secrets_can_come_from_files(tmp_path):
    path = tmp_path / "retell_key"
    path.write_text("key_from_file\n")
    result = load_settings(DEBUG="false", SECRET_KEY="s" * 50, RETELL_API_KEY_FILE=str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("['key_from_file']")


def test_development_defaults_need_no_variables():
    result = load_settings(DEBUG="true")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['key_retellhub_dev'] retellhub.sqlite3"


@pytest.mark.parametrize(
    ("raw", "value"), [("true", True), ("1", True), ("off", False), ("", False)]
)
def test_env_bool_is_strict_but_friendly(monkeypatch, raw, value):
    monkeypatch.setenv("X_FLAG", raw)
    assert env.env_bool("X_FLAG") is value


def test_a_blank_boolean_keeps_its_default(monkeypatch):
    monkeypatch.setenv("X_FLAG", " ")
    assert env.env_bool("X_FLAG", True) is True
    assert env.env_bool("X_FLAG", False) is False


def test_env_bool_refuses_typos(monkeypatch):
    monkeypatch.setenv("X_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be a boolean"):
        env.env_bool("X_FLAG")


def test_env_int_refuses_words(monkeypatch):
    monkeypatch.setenv("X_COUNT", "many")
    with pytest.raises(ImproperlyConfigured, match="X_COUNT must be an integer"):
        env.env_int("X_COUNT", 1)


def test_env_str_reads_a_blank_value_as_unset(monkeypatch):
    monkeypatch.setenv("X_NAME", "  ")
    assert env.env_str("X_NAME", "fallback") == "fallback"
    monkeypatch.setenv("X_NAME", "given")
    assert env.env_str("X_NAME", "fallback") == "given"


def test_a_blank_database_url_means_the_embedded_sqlite_default():
    result = load_settings(DEBUG="true", DATABASE_URL="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "retellhub.sqlite3"


def test_env_list_drops_blanks(monkeypatch):
    monkeypatch.setenv("X_LIST", " a, ,b ,")
    assert env.env_list("X_LIST") == ["a", "b"]
    monkeypatch.setenv("X_LIST", "")
    assert env.env_list("X_LIST", "c,d") == ["c", "d"]


def sqlite_synchronous(**variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.db import connection;"
            " print(connection.cursor().execute('PRAGMA synchronous').fetchone()[0])",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "retellhub.settings", **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(("value", "pragma"), [("", "2"), ("normal", "1"), ("EXTRA", "3")])
def test_sqlite_commits_are_synced_to_disk_unless_told_otherwise(
    tmp_path: Any, value: str, pragma: str
) -> None:
    # PRAGMA synchronous reads back 1 for NORMAL, 2 for FULL, 3 for EXTRA.
    database = f"sqlite:///{tmp_path / 'sync.sqlite3'}"
    result = sqlite_synchronous(DATABASE_URL=database, SQLITE_SYNCHRONOUS=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == pragma


def test_an_unknown_sqlite_synchronous_mode_stops_start_up(tmp_path: Any) -> None:
    database = f"sqlite:///{tmp_path / 'sync.sqlite3'}"
    result = sqlite_synchronous(DATABASE_URL=database, SQLITE_SYNCHRONOUS="OFF")
    assert result.returncode != 0
    assert "SQLITE_SYNCHRONOUS must be one of FULL, EXTRA, NORMAL, got 'OFF'" in result.stderr


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("false", False)])
def test_postgresql_binds_parameters_on_the_server_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    if value is None:
        monkeypatch.delenv("DATABASE_SERVER_SIDE_BINDING", raising=False)
    else:
        monkeypatch.setenv("DATABASE_SERVER_SIDE_BINDING", value)
    config = database_config("postgres://u:p@db.example:5432/app?sslmode=require", test_dir=ROOT)
    assert config["OPTIONS"]["server_side_binding"] is expected
    assert config["OPTIONS"]["sslmode"] == "require"  # options from the URL are kept
    assert "pool" in config["OPTIONS"]


@pytest.mark.parametrize(
    ("pool", "prepared", "threshold"),
    [
        (None, None, 5),  # our own pool: direct connections keep their prepared statements
        ("false", None, None),  # PgBouncer in transaction mode may not
        ("false", "true", 5),  # PgBouncer 1.21+ with max_prepared_statements
        (None, "false", None),
    ],
)
def test_postgresql_prepares_repeated_statements_where_connections_keep_them(
    monkeypatch: pytest.MonkeyPatch, pool: str | None, prepared: str | None, threshold: int | None
) -> None:
    for name, value in (("DATABASE_POOL", pool), ("DATABASE_PREPARED_STATEMENTS", prepared)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    config = database_config("postgres://u:p@db.example:5432/app", test_dir=ROOT)
    assert config["OPTIONS"].get("prepare_threshold") == threshold


@pytest.mark.parametrize(
    ("asked", "pool", "url_options", "options"),
    [
        (None, None, "", None),
        ("true", None, "", "-c enable_seqscan=off"),
        (
            "true",
            None,
            "?options=-c%20statement_timeout%3D5000",
            "-c statement_timeout=5000 -c enable_seqscan=off",
        ),
        # Behind PgBouncer (no pool of ours), which refuses startup options it does not track.
        ("true", "false", "", None),
    ],
)
def test_postgresql_sequential_scans_are_priced_out_only_where_asked_and_safe(
    monkeypatch: pytest.MonkeyPatch,
    asked: str | None,
    pool: str | None,
    url_options: str,
    options: str | None,
) -> None:
    monkeypatch.delenv("DATABASE_PREPARED_STATEMENTS", raising=False)
    for name, value in (("DATABASE_INDEX_SCANS_ONLY", asked), ("DATABASE_POOL", pool)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    config = database_config(f"postgres://u:p@db.example:5432/app{url_options}", test_dir=ROOT)
    assert config["OPTIONS"].get("options") == options
    sqlite = database_config("sqlite:///db.sqlite3", test_dir=ROOT)
    assert "options" not in sqlite["OPTIONS"]
