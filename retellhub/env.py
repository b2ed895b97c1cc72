"""Typed readers for settings that come from the environment.

Every variable is documented in ``config/env.example``. Secrets may also be given as
``NAME_FILE`` pointing at a file (Docker and Kubernetes secrets), which wins over ``NAME``.
A variable set to nothing (``NAME=``, common in env and Compose files) counts as unset.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _given(name: str) -> str | None:
    """``NAME``'s value, or None when it is unset or blank: env files and Compose files
    often carry ``DATABASE_URL=`` with nothing after it, which must mean the default."""
    raw = os.environ.get(name)
    return None if raw is None or not raw.strip() else raw


def env_str(name: str, default: str = "") -> str:
    return _given(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = _given(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    # Strict on purpose: a typo such as DEBUG=ture must not silently mean False.
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = _given(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``, matched without regard to case and returned as listed there."""
    raw = env_str(name, default)
    by_key = {choice.lower(): choice for choice in choices}
    choice = by_key.get(raw.strip().lower())
    if choice is None:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return choice


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list; blanks around items and empty items are dropped. A blank
    value counts as unset: the default's items."""
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """``NAME_FILE`` (a path whose content is the secret) or ``NAME``."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return env_str(name, default)
