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


def env_str(name: str, default: str = "") -> str:
    """``NAME``, or ``default`` when it is unset or blank.

    Blank counts as unset, as for ``env_int``: env files and Compose files often carry
    ``DATABASE_URL=`` with nothing after it, which must mean the default, not an error.
    """
    raw = os.environ.get(name)
    return default if raw is None or raw.strip() == "" else raw


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default  # blank counts as unset, as for every reader here
    value = raw.strip().lower()
    # Strict on purpose: a typo such as DEBUG=ture must not silently mean False.
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


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
    return os.environ.get(name, default)
