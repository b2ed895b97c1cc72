"""Benchmark the REST API over many calls: list and stats latency, CSV export time and memory.

Usage (PostgreSQL is what the figures are meant for; SQLite works too)::

    createdb -h 127.0.0.1 -U postgres retellhub_bench_api
    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/retellhub_bench_api \\
        .venv/bin/python bench/api_load.py --calls 100000

It migrates the configured database, seeds ``--calls`` calls (each with one small event)
unless that many ``bench_`` calls are already there, creates a staff user with an API
token, starts the production server (manage.py serve) on a free loopback port against the
same database, and then, one request at a time over a keep-alive connection:

- ``list``: first pages of ``/api/calls/`` (50 rows), plain, filtered, searched, sorted;
- ``pages``: 20 consecutive cursor pages;
- ``stats``: ``/api/stats/`` over 30 days, all agents and one;
- ``export``: ``/api/calls/export.csv`` of everything, timed, with the server's peak
  resident memory (VmHWM) before and after, and a 10 % export for comparison.

Latencies are wall-clock per request on the client, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.services import api_token_create  # noqa: E402
from bench._common import HttpConnection, summarize_ms  # noqa: E402
from calls.models import Call, CallEvent  # noqa: E402
from tests.servers import asgi_server_process, database_url  # noqa: E402

PREFIX = "bench_"
BATCH = 5000
AGENTS = [f"agent_{name}" for name in ("sales", "support", "billing", "reception", "survey")]
SENTIMENTS = ["Positive", "Positive", "Neutral", "Negative", "Unknown", ""]
REASONS = ["user_hangup", "agent_hangup", "call_transfer", "voicemail_reached", "dial_no_answer"]
WORDS = "please thank you appointment refund tomorrow order account billing schedule".split()


def _call(n: int, now: datetime, rng: random.Random) -> Call:
    connected = rng.random() > 0.1
    started = now - timedelta(seconds=rng.randrange(60 * 86400))
    duration = rng.randrange(5_000, 600_000) if connected else 0
    sentiment = rng.choice(SENTIMENTS) if connected else ""
    text = " ".join(rng.choice(WORDS) for _ in range(120))
    return Call(
        call_id=f"{PREFIX}{n:07d}",
        agent_id=rng.choice(AGENTS),
        agent_name="Bench agent",
        call_type="phone_call",
        direction=rng.choice(["inbound", "outbound"]),
        from_number=f"+1415{rng.randrange(10**7):07d}",
        to_number="+14155559876",
        status="ended" if connected else "not_connected",
        started_at=started,
        ended_at=started + timedelta(milliseconds=duration),
        duration_ms=duration,
        disconnection_reason=rng.choice(REASONS) if connected else "dial_no_answer",
        transcript=f"Agent: Hello.\nUser: {text}\n",
        transcript_object=[{"role": "user", "content": text}],
        call_summary=f"The caller asked about {rng.choice(WORDS)}.",
        user_sentiment=sentiment,
        call_successful=(rng.random() > 0.3) if sentiment else None,
        combined_cost=Decimal(rng.randrange(100, 5000)) / 100 if connected else None,
        last_event="call_analyzed",
        last_event_at=started + timedelta(milliseconds=duration),
    )


def _event(call: Call) -> CallEvent:
    payload = {"call_id": call.call_id, "call_status": call.status}
    body = json.dumps({"event": "call_ended", "call": payload})
    received = call.ended_at or datetime.now(UTC)
    return CallEvent(
        call=call,
        event="call_ended",
        raw_body=body,
        body_sha256=f"{call.call_id:0>64}"[-64:],
        payload_key="call",
        first_received_at=received,
        last_received_at=received,
    )


def seed(total: int) -> None:
    existing = Call.objects.filter(call_id__startswith=PREFIX).count()
    if existing == total:
        print(f"seed: {total} calls already there")
        return
    Call.objects.filter(call_id__startswith=PREFIX).delete()
    rng, now, started = random.Random(7), datetime.now(UTC), time.monotonic()
    for first in range(0, total, BATCH):
        calls = Call.objects.bulk_create(
            [_call(n, now, rng) for n in range(first, min(first + BATCH, total))]
        )
        CallEvent.objects.bulk_create([_event(call) for call in calls])
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE calls_call; ANALYZE calls_callevent")
    print(f"seed: {total} calls in {time.monotonic() - started:.1f} s")


def bench_token() -> str:
    user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
    return api_token_create(user=user, name="bench")[1]


async def timed(conn: HttpConnection, path: str, token: str) -> tuple[int, dict[str, Any]]:
    started = time.perf_counter_ns()
    response = await conn.request("GET", path, {"Authorization": f"Bearer {token}"})
    elapsed = time.perf_counter_ns() - started
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {response.body[:300]!r}")
    is_json = response.headers.get("content-type", "").startswith("application/json")
    return elapsed, json.loads(response.body) if is_json else {"bytes": len(response.body)}


async def repeat(conn: HttpConnection, paths: Sequence[str], token: str, rounds: int) -> Any:
    durations = []
    for _ in range(rounds):
        for path in paths:
            durations.append((await timed(conn, path, token))[0])
    return summarize_ms(durations, (50, 99))


async def pages(conn: HttpConnection, token: str, count: int) -> Any:
    durations, path = [], "/api/calls/?page_size=50"
    for _ in range(count):
        elapsed, body = await timed(conn, path, token)
        durations.append(elapsed)
        path = body["next"].split("//", 1)[1].split("/", 1)[1]
        path = "/" + path
    return summarize_ms(durations, (50, 99))


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def export(conn: HttpConnection, token: str, query: str, pid: int) -> dict[str, Any]:
    before = peak_rss_mb(pid)
    elapsed, body = await timed(conn, f"/api/calls/export.csv{query}", token)
    after = peak_rss_mb(pid)
    return {
        "seconds": round(elapsed / 1e9, 2),
        "megabytes": round(body["bytes"] / 1e6, 1),
        "server_rss_mb_before": round(before[0], 1),
        "server_peak_rss_mb_before": round(before[1], 1),
        "server_peak_rss_mb_after": round(after[1], 1),
    }


async def measure(url: str, pid: int, token: str, rounds: int) -> dict[str, Any]:
    host, port = url.split("//")[1].split(":")
    conn = HttpConnection(host, int(port), timeout=600)
    lists = {
        "plain": ["/api/calls/"],
        "filtered": ["/api/calls/?agent=agent_sales&status=ended&user_sentiment=Negative"],
        "search": ["/api/calls/?search=refund"],
        "by_duration": ["/api/calls/?ordering=-duration"],
    }
    month = {"started_after": _iso(days=30), "started_before": _iso(days=0)}
    stats_all = "/api/stats/?" + "&".join(f"{k}={v}" for k, v in month.items())
    results: dict[str, Any] = {}
    await repeat(conn, ["/api/calls/", stats_all], token, 3)  # warm up
    for name, paths in lists.items():
        results[f"list_{name}"] = await repeat(conn, paths, token, rounds)
    results["list_cursor_pages"] = await pages(conn, token, 20)
    results["stats_30d"] = await repeat(conn, [stats_all], token, max(rounds // 4, 5))
    results["stats_30d_agent"] = await repeat(
        conn, [stats_all + "&agent=agent_sales"], token, max(rounds // 4, 5)
    )
    results["export_10pct"] = await export(conn, token, "?agent=agent_sales&direction=inbound", pid)
    results["export_all"] = await export(conn, token, "", pid)
    conn.close()
    return results


def _iso(*, days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_env() -> dict[str, str]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": "bench-secret-key-0123456789-0123456789-0123456789",
        "RETELL_API_KEY": "key_bench",
        "DATABASE_URL": database_url(connection.settings_dict),
        "LOG_LEVEL": "WARNING",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=40, help="requests per list variant")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    seed(args.calls)
    token = bench_token()
    log = Path(tempfile.mkdtemp()) / "server.log"
    with asgi_server_process(server_env(), log, kind="uvicorn") as server:  # manage.py serve
        results = asyncio.run(measure(server.url, server.process.pid, token, args.rounds))
    results["database"] = connection.vendor
    results["calls"] = Call.objects.filter(call_id__startswith=PREFIX).count()
    results["load_average"] = [round(n, 2) for n in os.getloadavg()]
    results["cpus"] = os.cpu_count()
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    assert settings.configured  # noqa: S101
    sys.exit(main())
