"""The webhook writer's cost per delivery, without HTTP: for changes to storage code.

Usage::

    .venv/bin/python bench/writer_cpu.py --batch 4 --deliveries 3000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch .venv/bin/python bench/writer_cpu.py

It renders realistic deliveries (bench/webhook_bodies.py: each call sends call_started,
call_ended, call_analyzed), then parses and writes them in batches of ``--batch`` with
``ingest.write_batch``, as a writer process does (calls/writer_process.py). The deliveries
come in the order the load client's ``--interleave`` connections would send them (each
sends one call's deliveries in turn; which one is next is random, seeded), so a batch
mostly holds different calls at different stages, as in the server; ``--interleave 1``
sends one call's three deliveries after the other (a batch then often holds two of the
same call: 14% fewer instructions per delivery than with 16). It prints per
delivery: this process's CPU, PostgreSQL's (its processes on this machine, as
bench/webhook_load.py counts them) and the wall time. The database is a fresh SQLite file
unless ``DATABASE_URL`` is set; a PostgreSQL database named there gets thousands of
calls, so give it a scratch one.

Run in the same machine phase, two versions compare far better here than through HTTP
(bench/webhook_load.py), but this shared machine still drifts by ±20%. For small changes,
count instructions instead: under ``valgrind --tool=callgrind --instr-atstart=no``,
``--callgrind`` switches instrumentation on for the timed part only, and the instructions
callgrind reports divided by ``--deliveries`` repeat to about 0.1%.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import bounded
from bench.cpu import local_postgresql_cpu_seconds
from bench.spawn import bench_env
from bench.webhook_bodies import CALL_ID_SLOT, render_call


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add = parser.add_argument
    add("--batch", type=bounded(int, 1, 64), default=4, help="deliveries per transaction")
    add("--deliveries", type=bounded(int, 1, 10**6), default=3000, help="timed deliveries")
    add("--seed", type=int, default=1, help="payload RNG seed (default: 1)")
    add(
        "--interleave",
        type=bounded(int, 1, 1024),
        default=16,
        help="calls in progress at once, as the load client's connections (default: 16)",
    )
    add("--callgrind", action="store_true", help="instrument only the timed part (callgrind)")
    add("--json", action="store_true", help="print the report as one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _set_up_django()
    run_id = f"{random.SystemRandom().getrandbits(40):010x}"  # apart from earlier runs' calls
    bodies = _bodies(args.deliveries + 1, seed=args.seed, run_id=run_id, calls=args.interleave)
    report = _measure(bodies, batch=args.batch, callgrind=args.callgrind)
    report["interleave"] = args.interleave
    report["stored_events"] = _stored_events(run_id)
    if args.json:
        print(json.dumps(report))
    else:
        print("\n".join(f"{name:<28}{value}" for name, value in report.items()))
    return 0


def _set_up_django() -> None:
    # The benchmarks' settings (bench/spawn.py): a fresh SQLite file unless DATABASE_URL.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retellhub.settings")
    for name, value in bench_env().items():
        os.environ.setdefault(name, value)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _bodies(count: int, *, seed: int, run_id: str, calls: int) -> list[bytes]:
    """``count`` bodies from ``calls`` calls in progress at once: each next body is the
    next delivery of a call picked at random, and a call that has sent its last is
    replaced by a new one."""
    rng = random.Random(seed)
    numbers = itertools.count()

    def new_call() -> list[bytes]:
        call_id = f"call_writer_{run_id}_{next(numbers)}".encode()
        return [b.replace(CALL_ID_SLOT.encode(), call_id) for b in render_call(rng, run_id)]

    in_progress = [new_call() for _ in range(calls)]
    bodies: list[bytes] = []
    while len(bodies) < count:
        slot = rng.randrange(calls)
        bodies.append(in_progress[slot].pop(0))
        if not in_progress[slot]:
            in_progress[slot] = new_call()
    return bodies


def _measure(bodies: list[bytes], *, batch: int, callgrind: bool) -> dict[str, Any]:
    from django.db import connection

    from calls.ingest import write_batch

    write_batch(_deliveries(bodies[:1]))  # connection, caches and statements made
    timed = bodies[1:]
    database_before = local_postgresql_cpu_seconds(os.environ)
    _instrument(callgrind, "on")
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    for start in range(0, len(timed), batch):
        write_batch(_deliveries(timed[start : start + batch]))
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    _instrument(callgrind, "off")
    database_after = local_postgresql_cpu_seconds(os.environ)
    per = 1000 / len(timed)
    report: dict[str, Any] = {
        "database": connection.vendor,
        "batch": batch,
        "deliveries": len(timed),
        "writer_cpu_ms_per_delivery": round(cpu * per, 3),
        "wall_ms_per_delivery": round(wall * per, 3),
    }
    if database_before is not None and database_after is not None:
        report["database_cpu_ms_per_delivery"] = round((database_after - database_before) * per, 3)
    return report


def _stored_events(run_id: str) -> int:
    from calls.models import CallEvent

    return CallEvent.objects.filter(call__call_id__startswith=f"call_writer_{run_id}_").count()


def _deliveries(bodies: list[bytes]) -> list[Any]:
    from calls.payloads import parse_webhook_for_merge
    from calls.services import IncomingDelivery

    return [
        IncomingDelivery(
            event=parse_webhook_for_merge(body),  # as the writer process parses it
            raw_body=body,
            source_ip="127.0.0.1",
            key_fingerprint="bench",
        )
        for body in bodies
    ]


def _instrument(callgrind: bool, state: str) -> None:
    if not callgrind:
        return
    control = shutil.which("callgrind_control")
    if control is None:
        raise SystemExit("--callgrind needs valgrind's callgrind_control on PATH")
    command = [control, "-i", state, str(os.getpid())]
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - valgrind's tool


if __name__ == "__main__":
    raise SystemExit(main())
