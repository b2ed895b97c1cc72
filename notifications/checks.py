"""Start-up checks for the outbox settings: a broken destination fails loudly, early."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ValidationError

from notifications import signing
from notifications.models import SlackTrigger, validate_delivery_url


def _url_errors(name: str, urls: list[str]) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    for url in urls:
        try:
            validate_delivery_url(url)
        except ValidationError:
            errors.append(
                checks.Error(f"{name} has a URL that is not https://", id="notifications.E001")
            )
    return errors


@checks.register()
def outbox_settings_check(**kwargs: Any) -> list[checks.CheckMessage]:
    errors = _url_errors("FORWARD_URLS", settings.FORWARD_URLS)
    if settings.SLACK_WEBHOOK_URL:
        errors += _url_errors("SLACK_WEBHOOK_URL", [settings.SLACK_WEBHOOK_URL])
    if settings.FORWARD_URLS and not signing.is_valid_secret(settings.FORWARD_SIGNING_SECRET):
        errors.append(
            checks.Error(
                "FORWARD_URLS is set but FORWARD_SIGNING_SECRET is missing or not whsec_<base64>.",
                hint='Generate one: python -c "from notifications.signing import '
                'generate_secret; print(generate_secret())"',
                id="notifications.E002",
            )
        )
    unknown = sorted(set(settings.SLACK_NOTIFY_EVENTS) - set(SlackTrigger.values))
    if unknown:
        errors.append(
            checks.Error(
                f"SLACK_NOTIFY_EVENTS has unknown events {unknown}; "
                f"choose from {sorted(SlackTrigger.values)}.",
                id="notifications.E003",
            )
        )
    return errors
