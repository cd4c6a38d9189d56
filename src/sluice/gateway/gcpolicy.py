"""The cyclic garbage collector, tuned for a relay: young collections only, full ones when idle.

Reference counting frees almost everything a relayed chunk allocates at once. What the cyclic
collector still finds is what survives: above all the entries of the live sessions' event
logs (a tuple and an event object per delta), tens of thousands of objects a second at a few
hundred streams. With CPython's generations, each of them is examined again and again as it
ages, and a collection of the older generations stops every stream for as long as it walks
them: 30 to 51 ms for a middle-generation collection at 100 and 200 streams (up to 86 ms with
a lower young threshold), and 185 to 225 ms for a full one, measured with the benchmark's load
against an instrumented gateway.

So every collection is followed by ``gc.freeze()``: its survivors move to the permanent
generation and are never examined again, and each collection walks only what was allocated
since the previous one (a few milliseconds). Objects frozen this way are still freed by
reference counting the moment nothing refers to them; only a reference cycle that forms
among them later would wait. For those, a full collection (everything unfrozen, collected,
frozen again) runs once the gateway has been quiet for ``QUIET`` seconds (no session live,
none started or ended) and the last one is a minute old, and at the latest every hour. (An
instant with no live session was once enough: a full collection of 66 ms then landed
between two back-to-back streams of the benchmark's c=1 probe.) After a benchmark run of
about 4,500 sessions, up to 200 at once, that full collection found 10 unreachable objects
among some 200,000 frozen ones: the sessions' structures are freed by reference counting,
not by the collector.

CPython starts a young collection when its count of tracked allocations *net of frees* passes
the threshold, and frees of frozen objects count too. Under a steady load, the sessions that
end free about as many objects as the live ones allocate, so the count hovers under the
threshold while the young generation grows: after 20 s at 200 streams it held 209,175
objects (mostly the live logs' deltas and their entries) and one collection walked them all
in 110 ms, a gap of five ticks in every stream. So while ``YOUNG_FROM`` sessions or more are
live, a young collection also runs every ``YOUNG_EVERY`` seconds, whatever the count says,
and each walks only what the last 20 ms allocated (under a millisecond at 200 streams). With
fewer live sessions fewer end each second to offset what the live ones allocate, and the
timer is not worth 50 wake-ups a second. (With the timer always on, the CPU per chunk at one
stream read 441 and 515 µs in two benchmark runs, against 220 and 368 µs without; that
figure moves in steps of 74 µs, one tick of the CPU clock, and later runs without the timer
read up to 441 µs too, so its cost there is not measured, only avoided.)
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from sluice.logs import kv

log = logging.getLogger("sluice.gc")

#: Tracked allocations (net of frees) between two young collections; each walks about these.
YOUNG_THRESHOLD = 5_000
#: A full collection when the gateway is quiet and the last one is at least this old (s) …
FULL_WHEN_IDLE_AFTER = 60.0
#: Idle means no session live, and none started or ended, for this long (seconds).
QUIET = 2.0
#: … and at the latest after this long, idle or not.
FULL_AT_LEAST_EVERY = 3600.0
#: How often the idle check looks.
CHECK_EVERY = 10.0
#: With this many sessions live or more …
YOUNG_FROM = 20
#: … a young collection at least this often (seconds);
YOUNG_EVERY = 0.02
#: with fewer, the schedule only looks this often.
SLOW_TICK = 1.0


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop":
        gc.freeze()


def tune_gc() -> None:
    """Young collections only, from now on: everything allocated so far (modules,
    configuration, the app) is frozen, and so are the survivors of every collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)


def untune_gc() -> None:
    """Back to CPython's collector (for tests): nothing frozen, default thresholds."""
    if _freeze_survivors in gc.callbacks:
        gc.callbacks.remove(_freeze_survivors)
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)


def full_collection() -> int:
    """Examine everything once: unfreeze, collect, freeze again. Returns what was unreachable."""
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    log.info(
        "full collection %s",
        kv(unreachable=found, ms=round((time.perf_counter() - started) * 1000, 1)),
    )
    return found


async def collect_on_schedule(live: Callable[[], int], quiet_for: Callable[[], float]) -> None:
    """Run forever. While ``YOUNG_FROM`` sessions or more are ``live``, a young collection
    every ``YOUNG_EVERY`` seconds. A full collection when the gateway has been quiet (no
    session live, none started or ended) for ``QUIET`` seconds and the last one is a minute
    old, and at the latest every hour. An instant with no live session is not enough: between
    two back-to-back sessions there is one, and the next would wait out the collection."""
    last_full = time.monotonic()
    next_check = last_full + CHECK_EVERY
    while True:
        await asyncio.sleep(YOUNG_EVERY if live() >= YOUNG_FROM else SLOW_TICK)
        if live() >= YOUNG_FROM:
            gc.collect(0)
        now = time.monotonic()
        if now < next_check:
            continue
        next_check = now + CHECK_EVERY
        since = now - last_full
        if (since >= FULL_WHEN_IDLE_AFTER and quiet_for() >= QUIET) or (
            since >= FULL_AT_LEAST_EVERY
        ):
            full_collection()
            last_full = time.monotonic()
