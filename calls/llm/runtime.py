"""Process-wide garbage-collector setting the call socket needs for steady latency.

retellhub/asgi.py freezes everything start-up created, so a full collection only walks
what was allocated since. But after the freeze almost nothing counts as long-lived, and
CPython starts a full collection whenever the objects promoted since the last one exceed
a quarter of the long-lived ones: with the default young threshold (700) that was one
full collection every ~5 s at 100 calls on the 2-core benchmark machine, 16-50 ms each
(gc callbacks in the daphne process, 16 during a 30-turn run), no call answered and no
ping returned meanwhile. With a young threshold of 10,000 there was none during the run;
young collections stay short because almost everything a frame or a token allocates is
freed by reference counting before the next one.

Applied when the first call socket opens: the first moment this process is known to
serve calls. Setting it in retellhub/asgi.py next to the freeze would be the better home.
"""

from __future__ import annotations

import gc

# CPython's default is 700 container allocations (net of deallocations).
GEN0_THRESHOLD = 10_000
_applied = False


def tune_once() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GEN0_THRESHOLD, _gen0), gen1, gen2)
