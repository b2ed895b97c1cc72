"""Process-wide settings the call socket needs for steady latency, applied once.

The garbage collector's full collections walk every container object in the process:
Django, every imported module, every open call. Measured in the daphne process at 100
calls on the 2-core benchmark machine: a full collection every ~10 s, 140 ms on average
and up to 240 ms, during which no call is answered and no ping returned. Objects that
exist once the server is up (modules, settings, URL patterns, the app registry) live as
long as the process; ``gc.freeze()`` moves them out of the collector's sight, so a full
collection only walks what the calls themselves hold. A larger first threshold makes the
young collections rarer; they stay short because almost everything a frame allocates is
freed by reference counting before the next one.

Ideally this runs at start-up in retellhub/asgi.py; the socket applies it when it opens
its first connection, which is the first moment it is known to be serving calls.
"""

from __future__ import annotations

import gc
import logging
import time

logger = logging.getLogger(__name__)

# Young-generation threshold: CPython's default is 700 allocations.
GEN0_THRESHOLD = 10_000
_applied = False


def tune_once() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    started = time.perf_counter()
    gc.collect()  # garbage from start-up must not be frozen with the rest
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
    logger.info(
        "garbage collector tuned: %d objects frozen in %.0f ms",
        gc.get_freeze_count(),
        (time.perf_counter() - started) * 1000,
    )
