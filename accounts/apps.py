from __future__ import annotations

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "accounts"
    verbose_name = "API access"

    def ready(self) -> None:
        # Registers the OpenAPI description of the bearer scheme with drf-spectacular.
        from accounts import schema  # noqa: F401
