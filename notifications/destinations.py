"""Where side effects go: database destinations plus those the environment configures.

Environment variables (``SLACK_WEBHOOK_URL``, ``FORWARD_URLS``) become rows too, so every
delivery has a destination to show in admin; the secrets stay in settings.
"""

from __future__ import annotations

import time

from django.conf import settings

from notifications.models import Destination, DestinationKind

ENV_SLACK_KEY = "env:slack"
ENV_FORWARD_KEY_PREFIX = "env:forward:"
# How long another process's first destination may go unseen (see _EmptyTableMemo).
DESTINATIONS_EMPTY_TTL_SECONDS = 5.0
SYNCED_FIELDS = ("name", "kind", "url", "events", "show_phone_numbers", "enabled")


def _env_destinations() -> list[Destination]:
    wanted: list[Destination] = []
    if settings.SLACK_WEBHOOK_URL:
        wanted.append(
            Destination(
                env_key=ENV_SLACK_KEY,
                name="Slack (SLACK_WEBHOOK_URL)",
                kind=DestinationKind.SLACK,
                # The URL is the credential: the row shows where, settings hold the secret.
                url="https://hooks.slack.com/services/(from-environment)",
                events=",".join(settings.SLACK_NOTIFY_EVENTS),
                show_phone_numbers=settings.SLACK_SHOW_PHONE_NUMBERS,
            )
        )
    for index, url in enumerate(settings.FORWARD_URLS, start=1):
        wanted.append(
            Destination(
                env_key=f"{ENV_FORWARD_KEY_PREFIX}{index}",
                name=f"Forward {index} (FORWARD_URLS)",
                kind=DestinationKind.FORWARD,
                url=url,
                events=",".join(settings.FORWARD_EVENTS),
            )
        )
    return wanted


def _destination_update(*, row: Destination, want: Destination) -> None:
    if any(getattr(row, name) != getattr(want, name) for name in SYNCED_FIELDS):
        for name in SYNCED_FIELDS:
            setattr(row, name, getattr(want, name))
        row.save()


def destination_sync_from_settings(*, existing: list[Destination]) -> list[Destination]:
    """Make the environment's destinations rows; returns every destination, synced.

    Writes only what differs, so the common case is the one SELECT the caller already did.
    Rows whose variable was removed are disabled, not deleted: their log stays.
    """
    rows = {row.env_key: row for row in existing if row.env_key is not None}
    wanted = {row.env_key: row for row in _env_destinations() if row.env_key is not None}
    for key, row in rows.items():
        if key not in wanted and row.enabled:
            row.enabled = False
            row.save(update_fields=["enabled", "updated_at"])
    for key, want in wanted.items():
        if key not in rows:
            # get_or_create: two first-ever webhooks may race to create the same row.
            fields = {name: getattr(want, name) for name in SYNCED_FIELDS}
            rows[key], _ = Destination.objects.get_or_create(env_key=key, defaults=fields)
        _destination_update(row=rows[key], want=want)
    return [*(row for row in existing if row.env_key is None), *rows.values()]


def destination_target(*, destination: Destination) -> tuple[str, str]:
    """(URL, signing secret) to use now; environment rows read them from settings."""
    if destination.env_key == ENV_SLACK_KEY:
        return settings.SLACK_WEBHOOK_URL, ""
    if destination.env_key:
        return destination.url, settings.FORWARD_SIGNING_SECRET
    return destination.url, destination.signing_secret


class _EmptyTableMemo:
    """Remembers for a few seconds that a table was seen empty.

    Most installations configure no destinations, yet every delivery asked for them: a
    query per webhook. Saves and deletes in this process forget the memo at once (and
    again at their commit, so a read racing the writer's transaction cannot bring it
    back); another process's first destination is seen after at most ``ttl`` seconds, so
    events in that window are not sent to it. The generation makes a read that a write
    overtook unable to store its stale "empty".
    """

    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self.generation = 0
        self._empty_until = 0.0

    def known_empty(self) -> bool:
        return time.monotonic() < self._empty_until

    def remember_empty(self, *, generation: int) -> None:
        if generation == self.generation:
            self._empty_until = time.monotonic() + self.ttl

    def forget(self) -> None:
        self.generation += 1
        self._empty_until = 0.0


# Forgotten by notifications.signals whenever a destination is saved or deleted.
destinations_empty = _EmptyTableMemo(ttl=DESTINATIONS_EMPTY_TTL_SECONDS)


def _destination_rows() -> list[Destination]:
    if destinations_empty.known_empty():
        return []
    generation = destinations_empty.generation
    rows = list(Destination.objects.all())
    if not rows:
        destinations_empty.remember_empty(generation=generation)
    return rows


def destination_list_synced() -> list[Destination]:
    """Every destination, the environment's synced in; no query while none are known."""
    return destination_sync_from_settings(existing=_destination_rows())
