"""Production configuration: ``check --deploy``, JSON logs, and the docker/ files.

No Docker engine runs in CI, so the image and the compose file are checked as files: their
structure here, and the entrypoint by running it with the project's own Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import ROOT

DOCKER = ROOT / "docker"
PRODUCTION_SECRET_KEY = "prod-like-secret-3f9c1a7e5b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f"


def env_example() -> dict[str, str]:
    """config/env.example as a mapping: the documented production configuration."""
    values = {}
    for line in (ROOT / "config" / "env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in env_example() and k != "DEBUG"}
    return {
        **base,
        **env_example(),
        # Real values where the example has placeholders; a file database needs no server.
        "SECRET_KEY": PRODUCTION_SECRET_KEY,
        "RETELL_API_KEY": "key_production_like_0123",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'deploy.sqlite3'}",
        **overrides,
    }


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- check --deploy -----------------------------------------------------------------------


def test_check_deploy_is_clean_with_the_documented_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_a_missing_https_redirect(tmp_path):
    env = production_env(tmp_path, SECURE_SSL_REDIRECT="false")
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W008" in result.stderr


def test_production_refuses_to_start_without_secrets(tmp_path):
    env = production_env(tmp_path)
    del env["SECRET_KEY"]
    result = manage(env, "check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


# --- Logs -----------------------------------------------------------------------------------

LOG_ONE_LINE = (
    "import django, logging; django.setup(); "
    "logging.getLogger('calls').warning('caller +14155550123 said hi', "
    "extra={'call_id': 'call_1', 'from_number': '+14155550123'})"
)


def emit_log(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LOG_ONE_LINE],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "retellhub.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_json_logs_are_one_redacted_object_per_line(tmp_path):
    result = emit_log(production_env(tmp_path, LOG_FORMAT="json"))
    record: dict[str, Any] = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["level"] == "WARNING"
    assert record["logger"] == "calls"
    assert record["call_id"] == "call_1"
    assert record["message"] == "caller [redacted] said hi"
    assert record["from_number"] == "[redacted]"
    assert "4155550123" not in result.stderr


def test_plain_logs_stay_the_default(tmp_path):
    env = production_env(tmp_path)
    env.pop("LOG_FORMAT", None)
    result = emit_log(env)
    assert " WARNING calls caller [redacted] said hi" in result.stderr


def test_an_unknown_log_format_is_refused(tmp_path):
    result = emit_log(production_env(tmp_path, LOG_FORMAT="xml"))
    assert result.returncode != 0
    assert "LOG_FORMAT must be plain or json" in result.stderr


# --- docker/ --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_runs_the_database_redis_web_worker_and_balancer(compose):
    assert set(compose["services"]) == {"postgres", "redis", "migrate", "web", "worker", "lb"}


@pytest.mark.parametrize("name", ["postgres", "redis", "web", "worker", "lb"])
def test_every_long_running_service_has_a_health_check(compose, name):
    healthcheck = compose["services"][name]["healthcheck"]
    assert healthcheck["test"][0] == "CMD"


def test_web_and_worker_wait_for_migrations_and_healthy_backends(compose):
    for name in ("web", "worker"):
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["postgres"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}


def test_only_the_migrate_service_migrates(compose):
    services = compose["services"]
    assert services["migrate"]["environment"]["RUN_MIGRATIONS"] == "true"
    assert services["web"]["environment"]["RUN_MIGRATIONS"] == "false"
    assert services["worker"]["environment"]["RUN_MIGRATIONS"] == "false"


def test_the_app_uses_postgres_and_redis_on_the_compose_network(compose):
    environment = compose["services"]["web"]["environment"]
    assert environment["DATABASE_URL"].startswith("postgres://retellhub:")
    assert "@postgres:5432/" in environment["DATABASE_URL"]
    assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_the_worker_runs_the_outbox_task_worker(compose):
    command = " ".join(compose["services"]["worker"]["command"])
    assert "manage.py db_worker --no-reload" in command
    assert "manage.py outbox_requeue" in command


def test_the_balancer_config_is_the_one_mounted(compose):
    volume = compose["services"]["lb"]["volumes"][0]
    assert volume.startswith("./nginx.conf:")
    assert (DOCKER / "nginx.conf").is_file()


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split()[0].upper(), line.partition(" ")[2])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_is_multi_stage_slim_and_non_root():
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) == 2
    assert all("-slim" in stage for stage in stages)
    users = [args for op, args in instructions if op == "USER"]
    assert users
    assert users[-1] not in {"root", "0"}


def test_the_image_collects_static_files_and_serves_with_manage_py_serve():
    instructions = dockerfile_instructions()
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "manage.py collectstatic --noinput" in runs
    command = json.loads(next(args for op, args in instructions if op == "CMD"))
    assert command[:3] == ["python", "manage.py", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - in a container


def run_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    venv_bin = str(Path(sys.executable).parent)
    return subprocess.run(
        ["sh", str(DOCKER / "entrypoint.sh"), "echo", "command ran"],
        cwd=ROOT,
        env={**production_env(tmp_path), "PATH": f"{venv_bin}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_entrypoint_migrates_then_runs_the_command(tmp_path):
    result = run_entrypoint(tmp_path, RUN_MIGRATIONS="true")
    assert result.returncode == 0, result.stderr
    assert "Applying calls.0001" in result.stdout
    assert result.stdout.rstrip().endswith("command ran")


def test_the_entrypoint_skips_migrations_when_told(tmp_path):
    result = run_entrypoint(tmp_path, RUN_MIGRATIONS="false")
    assert result.stdout == "command ran\n"
    assert not (tmp_path / "deploy.sqlite3").exists()
