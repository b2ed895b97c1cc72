"""``manage.py sync_calls --since DATE [--dry-run]``: heal calls whose webhooks were missed.

Lists Retell's calls started since DATE through retell-sdk and merges each finished one
like a webhook delivery (calls/reconcile.py). ``--dry-run`` reports the gaps and changes
nothing. On a terminal a progress bar goes to stderr; the report goes to stdout.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser, ArgumentTypeError
from datetime import datetime, time
from typing import Any, TextIO

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from calls.reconcile import ReconcileError, SyncReport, calls_sync, retell_client

BAR_WIDTH = 30


def since_value(value: str) -> datetime:
    """A date (midnight in TIME_ZONE) or an ISO 8601 date-time; naive means TIME_ZONE."""
    try:
        moment = parse_datetime(value)
        day = None if moment else parse_date(value)
    except ValueError:
        moment = day = None
    if day is not None:
        moment = datetime.combine(day, time.min)
    if moment is None:
        raise ArgumentTypeError(f"expected a date such as 2026-11-01 (got {value!r})")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be a whole number of at least 1 (got {value!r})")
    return number


class ProgressBar:
    """``[#####-----] 120/400 calls`` redrawn in place; without a total, just the count."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int | None) -> None:
        if total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {done}/{total} calls")
        else:
            self.stream.write(f"\r{done} calls listed")
        self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


class Command(BaseCommand):
    help = "List calls from Retell's API and merge those the webhooks missed."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--since", type=since_value, required=True, help="Calls started at or after this."
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Report the gaps; change nothing."
        )
        parser.add_argument(
            "--page-size", type=positive_int, default=100, help="Calls per API request."
        )
        parser.add_argument(
            "--retries",
            type=int,
            default=2,
            help="Retries per API request on connection errors, 429 and 5xx (the SDK's).",
        )
        parser.add_argument("--timeout", type=float, default=60.0, help="Seconds per request.")

    def handle(
        self,
        *args: Any,
        since: datetime,
        dry_run: bool,
        page_size: int,
        retries: int,
        timeout: float,
        **options: Any,
    ) -> None:
        client = retell_client(
            api_key=settings.RETELL_API_KEY,
            base_url=settings.RETELL_BASE_URL,
            max_retries=max(retries, 0),
            timeout=timeout,
        )
        bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
        try:
            report = calls_sync(
                client=client,
                api_key=settings.RETELL_API_KEY,
                since_ms=int(since.timestamp() * 1000),
                page_size=page_size,
                dry_run=dry_run,
                progress=bar,
            )
        except ReconcileError as exc:
            raise CommandError(f"{exc} Calls merged before the failure are kept.") from exc
        finally:
            if bar is not None:
                bar.finish()
        self._report(report, dry_run=dry_run)

    def _report(self, report: SyncReport, *, dry_run: bool) -> None:
        for gap in report.gaps:
            detail = f": {', '.join(gap.fields)}" if gap.fields else ""
            self.stdout.write(f"{gap.kind} {gap.call_id}{detail}")
        verb = "would heal" if dry_run else "healed"
        self.stdout.write(
            f"{report.listed} calls listed: {len(report.gaps)} {verb}, "
            f"{report.in_step} already in step, {report.in_progress} still in progress."
        )
