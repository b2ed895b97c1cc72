"""``manage.py prune_calls --days N [--scrub FIELDS] [--dry-run]``: retention from cron.

Without ``--scrub`` old calls are deleted; with it, only the named fields are blanked.
Idempotent and batched (see calls/retention.py), so running it nightly is safe.
"""

from __future__ import annotations

from argparse import ArgumentParser, ArgumentTypeError
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.utils import timezone

from calls.retention import SCRUB_FIELDS, RetentionReport, call_prune, call_scrub


def positive_days(value: str) -> int:
    days = int(value)
    if days < 1:
        raise ArgumentTypeError("must be at least 1")
    return days


def scrub_fields(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCRUB_FIELDS))
    if not names or unknown:
        raise ArgumentTypeError(f"choose from {', '.join(SCRUB_FIELDS)} (got {value!r})")
    return names


class Command(BaseCommand):
    help = "Delete calls older than N days, or scrub chosen personal data from them."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--days", type=positive_days, required=True, help="Act on calls older than this."
        )
        parser.add_argument(
            "--scrub",
            type=scrub_fields,
            help=f"Comma-separated fields to blank instead of deleting: {', '.join(SCRUB_FIELDS)}.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be done; change nothing."
        )

    def handle(
        self, *args: Any, days: int, scrub: list[str] | None, dry_run: bool, **options: Any
    ) -> None:
        older_than = timedelta(days=days)
        now = timezone.now()
        if scrub:
            report = call_scrub(older_than=older_than, fields=scrub, now=now, dry_run=dry_run)
            verbs = (f"Would scrub {', '.join(scrub)} on", f"Scrubbed {', '.join(scrub)} on")
        else:
            report = call_prune(older_than=older_than, now=now, dry_run=dry_run)
            verbs = ("Would delete", "Deleted")
        self.stdout.write(summary(report, verb=verbs[0] if dry_run else verbs[1]))


def summary(report: RetentionReport, *, verb: str) -> str:
    line = f"{verb} {report.calls} call(s) from before {report.cutoff:%Y-%m-%d %H:%M} UTC"
    details = ", ".join(f"{count} {name}" for name, count in report.counts.items())
    return f"{line} ({details})." if details else f"{line}."
